{ qubez = { }; }

{ qubes.work = { memory = 16; }; }

{ qubes.work = { memroy = 2048; }; }

{ qubes.work = { memory = "lots"; }; }

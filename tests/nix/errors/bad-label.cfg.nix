{ qubes.work = { label = "pink"; }; }

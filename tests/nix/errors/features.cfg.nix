{ qubes.work.features = { gui = 1; }; }

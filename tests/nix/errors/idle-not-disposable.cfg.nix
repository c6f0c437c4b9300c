{ qubes.work = { idleTimeout = 60; }; }

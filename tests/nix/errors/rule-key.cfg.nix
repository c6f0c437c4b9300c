{ qubes.work.firewall = [ { action = "accept"; } { action = "drop"; port = 22; } ]; }

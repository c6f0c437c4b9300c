{ qubes.work.firewall = [ { action = "accept"; proto = "tcp"; dstports = [ 80 ]; } ]; }

{ qubes.work.firewall = [ { dsthost = "10.0.0.0/8"; } ]; }

{ qubes.work = { }; credentials.work."../x" = "/run/x"; }

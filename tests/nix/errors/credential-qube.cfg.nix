{ qubes.work = { }; credentials.wrok.token = "/run/x"; }

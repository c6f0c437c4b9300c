{ qubes.work = { }; credentials.work.token = "secret.txt"; }

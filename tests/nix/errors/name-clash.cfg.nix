{ templates.base = { from = "busybox"; }; qubes.base = { }; }

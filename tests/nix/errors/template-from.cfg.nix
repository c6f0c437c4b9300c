{ templates.base = { from = "docker"; }; }

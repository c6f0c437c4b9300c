{ templates.base = { from = "nixos"; }; }

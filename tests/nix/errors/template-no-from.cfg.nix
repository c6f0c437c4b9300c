{ templates.base = { label = "black"; }; }

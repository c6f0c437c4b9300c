{ templates.base = { from = "path"; path = "roots/base"; }; }

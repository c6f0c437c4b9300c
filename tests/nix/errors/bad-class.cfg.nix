{ qubes.work = { class = "vm"; }; }

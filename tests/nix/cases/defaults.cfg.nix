# Unset options are absent: everything else is the description's default.
{
  templates.base = { from = "busybox"; };
  qubes.work = { template = "base"; };
  qubes.dvm = { class = "disposable-template"; template = "base"; };
}

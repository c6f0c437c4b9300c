# Helpers for examples/system.nix (imported, to show that a description may be
# split over several files).
{
  # An app qube on the shared template with the defaults every example qube has.
  appQube = attrs: { class = "app"; template = "base"; } // attrs;

  # The firewall rule that allows name resolution.
  dnsRule = { action = "accept"; specialtarget = "dns"; comment = "name resolution"; };
}

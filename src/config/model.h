#pragma once
// The in-memory model of a whole tessera system: what every loader (TOML, JSON,
// Nix) produces after validation and what every later part (policy, cell,
// daemon) consumes. A System that exists has passed validation: references
// resolve, names are valid, defaults are filled in.
//
//   config::System system = TRY(config::LoadSystemFile("system.toml"));
//   for (const config::Qube& q : system.qubes) { ... }
//   const config::Qube* work = system.Find("work");

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::config {

// Qubes classes. Policy type names: kTemplate=TemplateVM, kApp=AppVM,
// kDisposableTemplate=AppVM with template_for_dispvms, kDisposable=DispVM,
// kStandalone=StandaloneVM.
enum class QubeClass { kTemplate, kApp, kDisposableTemplate, kDisposable, kStandalone };

enum class Backend { kCell, kVm };

enum class FirewallAction { kAccept, kDrop };
enum class FirewallProto { kAny, kTcp, kUdp, kIcmp };

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
  bool operator==(const PortRange&) const = default;
};

// One Qubes firewall rule (qvm-firewall format). Rules are ordered; first match
// wins; there is an implicit final drop.
struct FirewallRule {
  FirewallAction action = FirewallAction::kDrop;
  // Normalised CIDR ("10.0.0.0/8", "2001:db8::/32") or a DNS name; empty = any.
  std::string dsthost;
  FirewallProto proto = FirewallProto::kAny;
  std::optional<PortRange> dstports;   // tcp/udp only
  std::optional<uint8_t> icmptype;     // icmp only
  bool specialtarget_dns = false;
  std::optional<int64_t> expire;       // seconds since the epoch
  std::string comment;
  bool operator==(const FirewallRule&) const = default;
};

// Disk I/O throttling of one qube (cgroup v2 io.max, v1 blkio.throttle.*) on
// the block device that holds the state directory. 0 = unlimited.
struct IoMax {
  uint64_t read_bps = 0;
  uint64_t write_bps = 0;
  uint64_t read_iops = 0;
  uint64_t write_iops = 0;
  bool operator==(const IoMax&) const = default;
};

// `uplink = "host-nat"`: the documented weaker uplink (docs/NETWORK.md).
inline constexpr const char* kHostNat = "host-nat";

// A template Nix built: its root store path and its closure, which qubes see
// read-only at /nix/store and nothing else of the store.
struct NixTemplate {
  std::string root;     // "/nix/store/<hash>-<name>": a buildEnv or a NixOS system
  std::string closure;  // a file listing the store paths of root's closure (closureInfo)
  // How the closure reaches a qube: "erofs" or "squashfs" (an image per
  // template generation), or "none" (the host's whole /nix/store, read-only).
  std::string image = "erofs";
  bool operator==(const NixTemplate&) const = default;
};

struct Qube {
  std::string name;
  QubeClass klass = QubeClass::kApp;
  std::string uuid;                        // stable; derived from the name unless given
  std::optional<std::string> template_name;  // app, disposable-template, disposable
  std::optional<std::string> netvm;        // nullopt = offline (loopback only)
  bool provides_network = false;           // may be another qube's netvm
  std::string label = "red";               // Qubes colour name
  std::string default_user = "user";       // who `tessera run` runs as: a name or UID[:GID]
  uint64_t memory_mib = 0;                 // hard limit
  uint64_t private_size_mib = 0;           // private volume size (0 = unset: 2048)
  uint32_t cpus = 1;
  uint32_t io_weight = 100;                // 1..10000: share of disk time (io.weight)
  IoMax io_max;
  std::vector<std::string> tags;           // sorted, unique
  bool autostart = false;
  uint32_t idle_timeout = 0;               // seconds; disposables only, 0 = never
  std::optional<std::string> default_dispvm;  // a disposable-template qube
  std::vector<FirewallRule> firewall;      // empty = Qubes default [accept]
  // `firewall_runtime = "reset-on-apply"`: every apply drops the qube's
  // runtime rules (`tessera firewall add`); false ("keep") keeps them.
  bool reset_runtime_firewall = false;
  // The uplink of a provides_network qube without a netvm (docs/NETWORK.md):
  // a host interface moved into its namespace for its life, or kHostNat (a
  // veth to the host, which NATs); "" = none.
  std::string uplink;
  std::string uplink_address;           // "A.B.C.D/N" on the uplink; "" = DHCP
  std::string uplink_gateway;           // "A.B.C.D": its default route
  std::vector<std::string> uplink_dns;  // resolvers its clients' DNS goes to
  std::map<std::string, std::string> features;
  // Host files copied into the qube at each start, as
  // /run/credentials/<name> (name -> absolute host path); never part of a
  // template or a volume, never given to a disposable made from it.
  std::map<std::string, std::string> credentials;
  Backend backend = Backend::kCell;
  // Template-class qubes only: how storage builds the root tree: "busybox",
  // "debootstrap", "host", "dir:/absolute/path" or "nix" (then `nix` says
  // what). Empty for other classes.
  std::string template_source;
  // source = "nix": a tree Nix built (docs/NIXOS.md "Templates from Nix").
  std::optional<NixTemplate> nix;
  bool operator==(const Qube&) const = default;
};

// The RPC broker's settings (`[rpc]`, docs/RPC.md).
struct RpcSettings {
  uint32_t max_calls_per_qube = 64;  // in flight per calling qube; more wait their turn
  uint32_t ask_timeout_s = 60;       // an unanswered ask is denied after this
  bool operator==(const RpcSettings&) const = default;
};

struct System {
  std::vector<Qube> qubes;                 // sorted by name
  std::string policy_dir;                  // default /etc/tessera/policy.d
  RpcSettings rpc;
  std::optional<std::string> default_dispvm;  // system-wide default for qubes without one
  std::string network_range = "10.137.0.0/16";  // qubes' addresses come from here
  bool operator==(const System&) const = default;

  const Qube* Find(std::string_view name) const;
};

std::string_view ToString(QubeClass klass);
std::string_view ToString(Backend backend);
std::string_view ToString(FirewallAction action);
std::string_view ToString(FirewallProto proto);
// "read_bps=N,write_bps=N,read_iops=N,write_iops=N" (for diffs and messages).
std::string ToString(const IoMax& io_max);
// The Qubes type name used in policy (`@type:AppVM`).
std::string_view QubesTypeName(QubeClass klass);
// Inverse of ToString(QubeClass) ("disposable-template" -> kDisposableTemplate).
std::optional<QubeClass> ParseQubeClass(std::string_view text);

}  // namespace tessera::config

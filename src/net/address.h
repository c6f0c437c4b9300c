#pragma once
// IPv4 addresses and networks as qubes' network uses them (docs/NETWORK.md):
// parsing and printing, and the stable per-qube address book.
//
//   Ipv4Net range = TRY(Ipv4Net::Parse("10.137.0.0/16"));
//   AddressBook book = TRY(AddressBook::Load(state_dir + "/net/addresses.json", range));
//   uint32_t work = TRY(book.AddressOf("work"));   // the same after every restart
//   TRY(book.Save());

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/error.h"

namespace tessera::net {

// Host byte order.
Result<uint32_t> ParseIpv4(std::string_view text);
std::string FormatIpv4(uint32_t address);

struct Ipv4Net {
  uint32_t address = 0;  // the network's first address
  int prefix = 32;

  // "A.B.C.D/N" (host bits must be zero) or "A.B.C.D" (= /32).
  static Result<Ipv4Net> Parse(std::string_view text);
  std::string ToString() const;
  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  bool Contains(uint32_t a) const { return (a & mask()) == address; }
  bool operator==(const Ipv4Net&) const = default;
};

// The virtual DNS servers every qube with a netvm is given; its netvm
// redirects them to its own resolvers (Qubes' addresses).
inline constexpr uint32_t kVirtualDns1 = (10u << 24) | (139u << 16) | (1u << 8) | 1u;
inline constexpr uint32_t kVirtualDns2 = (10u << 24) | (139u << 16) | (1u << 8) | 2u;

// One stable address per qube from a range, kept in a file in the state
// directory so that a qube keeps its address across restarts of itself and
// of the daemon. The range's first two addresses and its last are never
// given out (network, reserved, broadcast). Addresses outside the range (the
// range changed) are dropped on load and given anew.
class AddressBook {
 public:
  static Result<AddressBook> Load(std::string path, Ipv4Net range);

  // `qube`'s address, allocating the lowest free one the first time.
  Result<uint32_t> AddressOf(const std::string& qube);
  // Frees the address of a qube that no longer exists.
  void Release(const std::string& qube);
  // Writes the book (atomically); a no-op when nothing changed.
  Status Save();

  const std::map<std::string, uint32_t>& entries() const { return by_qube_; }
  const Ipv4Net& range() const { return range_; }

 private:
  AddressBook(std::string path, Ipv4Net range) : path_(std::move(path)), range_(range) {}

  std::string path_;
  Ipv4Net range_;
  std::map<std::string, uint32_t> by_qube_;
  std::map<uint32_t, std::string> by_address_;
  bool dirty_ = false;
};

}  // namespace tessera::net

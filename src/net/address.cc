#include "net/address.h"

#include <cerrno>
#include <nlohmann/json.hpp>

#include "common/fs.h"
#include "common/json_access.h"

namespace tessera::net {

using nlohmann::json;

Result<uint32_t> ParseIpv4(std::string_view text) {
  uint32_t address = 0;
  size_t pos = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0) {
      if (pos >= text.size() || text[pos] != '.') break;
      ++pos;
    }
    size_t start = pos;
    unsigned value = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && pos - start < 3) {
      value = value * 10 + static_cast<unsigned>(text[pos] - '0');
      ++pos;
    }
    bool leading_zero = pos - start > 1 && text[start] == '0';
    if (pos == start || value > 255 || leading_zero) {
      return Err("\"" + std::string(text) + "\" is not an IPv4 address");
    }
    address = (address << 8) | value;
    if (part == 3 && pos == text.size()) return address;
  }
  return Err("\"" + std::string(text) + "\" is not an IPv4 address");
}

std::string FormatIpv4(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
         std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255);
}

Result<Ipv4Net> Ipv4Net::Parse(std::string_view text) {
  size_t slash = text.find('/');
  Ipv4Net net;
  net.address = TRY(ParseIpv4(text.substr(0, slash)));
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    if (p.empty() || p.size() > 2 || p.find_first_not_of("0123456789") != std::string_view::npos) {
      return Err("\"" + std::string(text) + "\": the prefix length must be 0..32");
    }
    net.prefix = std::stoi(std::string(p));
    if (net.prefix > 32)
      return Err("\"" + std::string(text) + "\": the prefix length must be 0..32");
  }
  if ((net.address & ~net.mask()) != 0) {
    return Err("\"" + std::string(text) + "\" has host bits set (did you mean " +
               FormatIpv4(net.address & net.mask()) + "/" + std::to_string(net.prefix) + "?)");
  }
  return net;
}

std::string Ipv4Net::ToString() const { return FormatIpv4(address) + "/" + std::to_string(prefix); }

Result<AddressBook> AddressBook::Load(std::string path, Ipv4Net range) {
  if (range.prefix > 29) {
    return Err("address range " + range.ToString() + " is too small (at most /29)");
  }
  AddressBook book(std::move(path), range);
  auto text = ReadFile(book.path_, 4u << 20);
  if (!text) {
    if (text.error().errno_value() == ENOENT) return book;
    return Err(text.error());
  }
  JsonLimits limits;
  limits.what = book.path_;
  limits.max_bytes = 4u << 20;
  json doc = TRY(ParseJsonObject(*text, limits));
  const json* qubes = doc.contains("qubes") ? &doc["qubes"] : nullptr;
  if (qubes == nullptr || !qubes->is_object()) {
    return Err(book.path_ + ": no \"qubes\" object");
  }
  for (const auto& [qube, value] : qubes->items()) {
    if (!value.is_string()) return Err(book.path_ + ": qubes." + qube + " is not a string");
    auto address = ParseIpv4(value.get<std::string>());
    if (!address) return Err(book.path_ + ": qubes." + qube + ": " + address.error().message());
    // A changed range gives every qube outside it a new address.
    if (!range.Contains(*address) || book.by_address_.count(*address) != 0) {
      book.dirty_ = true;
      continue;
    }
    book.by_qube_[qube] = *address;
    book.by_address_[*address] = qube;
  }
  return book;
}

Result<uint32_t> AddressBook::AddressOf(const std::string& qube) {
  if (auto it = by_qube_.find(qube); it != by_qube_.end()) return it->second;
  uint32_t first = range_.address + 2;
  uint32_t last = range_.address + ~range_.mask() - 1;  // before the broadcast address
  for (uint32_t a = first; a <= last; ++a) {
    if (by_address_.count(a) != 0) continue;
    by_qube_[qube] = a;
    by_address_[a] = qube;
    dirty_ = true;
    return a;
  }
  return Err("no free address left in " + range_.ToString() + " for qube " + qube);
}

void AddressBook::Release(const std::string& qube) {
  auto it = by_qube_.find(qube);
  if (it == by_qube_.end()) return;
  by_address_.erase(it->second);
  by_qube_.erase(it);
  dirty_ = true;
}

Status AddressBook::Save() {
  if (!dirty_) return {};
  json qubes = json::object();
  for (const auto& [qube, address] : by_qube_) qubes[qube] = FormatIpv4(address);
  json doc = {{"range", range_.ToString()}, {"qubes", qubes}};
  TRY(MakeDirs(DirName(path_), 0700));
  TRY(WriteFileAtomic(path_, doc.dump(2) + "\n", 0600));
  dirty_ = false;
  return {};
}

}  // namespace tessera::net

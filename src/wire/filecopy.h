#pragma once
// The byte stream of qubes.Filecopy (docs/RPC.md "qubes.Filecopy"): what
// tessera-copy sends and the receiver in the target unpacks. The receiver
// treats it as hostile; everything here is pure and fuzzed
// (tests/fuzz/filecopy_fuzz.cc).
//
// A sequence of records, each a 32-byte little-endian header then the name
// and the body:
//
//   u8  type       'D' directory, 'F' regular file, 'L' symlink, 'E' end of stream
//   u8  reserved[3] 0
//   u32 name_len   1..kMaxPath ('E': 0)
//   u32 mode       permission bits (the receiver keeps only 0777)
//   u32 mtime_nsec < 1e9
//   u64 mtime_sec
//   u64 size       'F': content bytes that follow; 'L': target bytes; 'D', 'E': 0
//
// Names are relative paths with '/' separators, parents before children.
//
//   FilecopyHeader h = TRY(ParseFilecopyHeader(bytes32));
//   TRY(CheckFilecopyName(name));

#include <cstdint>
#include <string>
#include <string_view>

#include "common/error.h"

namespace tessera::wire {

inline constexpr size_t kFilecopyHeaderSize = 32;
inline constexpr uint32_t kMaxFilecopyPath = 4096;
inline constexpr size_t kMaxFilecopyComponent = 255;

enum class FilecopyType : uint8_t { kDir = 'D', kFile = 'F', kSymlink = 'L', kEnd = 'E' };

struct FilecopyHeader {
  FilecopyType type = FilecopyType::kEnd;
  uint32_t name_len = 0;
  uint32_t mode = 0;
  uint32_t mtime_nsec = 0;
  uint64_t mtime_sec = 0;
  uint64_t size = 0;
  bool operator==(const FilecopyHeader&) const = default;
};

std::string EncodeFilecopyHeader(const FilecopyHeader& header);
// Refuses unknown types, non-zero reserved bytes, names and sizes a type
// cannot have, nanoseconds out of range.
Result<FilecopyHeader> ParseFilecopyHeader(std::string_view bytes);

// A name the receiver may create: relative, components neither empty nor
// "." or "..", each ≤ kMaxFilecopyComponent bytes, no control characters
// (nor DEL), valid length.
Status CheckFilecopyName(std::string_view name);
// A symlink named `name` pointing to `target` stays inside the copied tree:
// the target is relative, has no control characters, and never climbs above
// the tree's root from the link's directory.
Status CheckFilecopySymlink(std::string_view name, std::string_view target);

}  // namespace tessera::wire

#pragma once
// Text helpers shared by the CLI, the daemon and the config validator: "did
// you mean" hints and making untrusted text safe to print on a terminal.
//
//   if (auto best = ClosestMatch(verb, verbs)) hint = " (did you mean '" + *best + "'?)";
//   std::fprintf(stderr, "%s\n", EscapeControl(reply_from_a_qube).c_str());

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

// Levenshtein distance (insertions, deletions, substitutions; bytewise).
size_t EditDistance(std::string_view a, std::string_view b);

// The candidate nearest to `word` ignoring ASCII case, if at most
// `max_distance` edits away; the first one wins a tie. Words longer than 64
// bytes never match (long garbage resembles nothing, and the distance is
// quadratic).
std::optional<std::string> ClosestMatch(std::string_view word,
                                        const std::vector<std::string>& candidates,
                                        size_t max_distance = 2);
std::optional<std::string> ClosestMatch(std::string_view word,
                                        std::span<const std::string_view> candidates,
                                        size_t max_distance = 2);

enum class EscapeNewlines { kKeep, kEscape };

// `text` made safe to print on a terminal: C0 control bytes (except '\n' and
// '\t' with kKeep), DEL, the C1 controls U+0080..U+009F (UTF-8 C2 80..C2 9F;
// a terminal may take C2 9B as CSI) and every byte that is not part of valid
// UTF-8 (overlong forms, surrogates and values above U+10FFFF included)
// become "\xNN" escapes, one per byte. Valid printable UTF-8 passes
// unchanged; a backslash stays a backslash (the output is for people, not
// for parsing back).
std::string EscapeControl(std::string_view text, EscapeNewlines keep = EscapeNewlines::kKeep);

// A size in MiB from "2048", "2048M", "2048MiB", "2G", "2GiB", "1T" or
// "1TiB" (binary units; case-insensitive suffix; a bare number is MiB, as
// `memory` is). nullopt for anything else, fractions and overflow included.
std::optional<uint64_t> ParseSizeMib(std::string_view text);

// "2 GiB", "1536 MiB", "12 KiB", "100 bytes": exact when the size is a whole
// number of the unit, else the next smaller unit ("1.5 GiB" is "1536 MiB").
std::string FormatBytes(uint64_t bytes);

// The lines of `text`, without their '\n'; a last line without one counts,
// an empty text has none. Views into `text`.
std::vector<std::string_view> SplitLines(std::string_view text);

}  // namespace tessera

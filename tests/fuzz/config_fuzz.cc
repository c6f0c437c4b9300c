// Fuzz target for the TOML and JSON loaders. The first byte picks the format
// (even: TOML, odd: JSON); the rest is the document. Besides "never crash, never
// hang", it checks the loader's promises on every input:
//   - a System comes back only without diagnostics (never a half-valid model);
//   - a valid System survives ToJson -> load unchanged, and ToJson is stable.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::config;
  if (size == 0) return 0;
  Format format = (data[0] & 1) == 0 ? Format::kToml : Format::kJson;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  LoadOutcome outcome = LoadSystemFromString(text, format, "fuzz");
  for (const Diagnostic& diagnostic : outcome.diagnostics) (void)diagnostic.ToString();
  if (outcome.system.has_value() != outcome.diagnostics.empty()) std::abort();
  if (!outcome.system) return 0;

  std::string json = ToJson(*outcome.system);
  LoadOutcome again = LoadSystemFromString(json, Format::kJson, "fuzz-roundtrip");
  if (!again.system || !(*again.system == *outcome.system)) std::abort();
  if (ToJson(*again.system) != json) std::abort();
  return 0;
}

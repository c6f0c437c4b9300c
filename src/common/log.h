#pragma once
// Structured logging: one line per event on stderr, in logfmt
// (`level=warn msg="..." qube=work errno=2`), so both people and tools can read it.
//
//   Log(LogLevel::kInfo, "qube started", {{"qube", "work"}, {"pid", "1234"}});
//
// The threshold comes from TESSERA_LOG_LEVEL (debug|info|warn|error; default info).
// Not async-signal-safe: never call between fork and exec.

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace tessera {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

using LogField = std::pair<std::string_view, std::string_view>;

void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});

// Overrides the environment's threshold (tests, --verbose).
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

// Formats one logfmt line without the trailing newline (exposed for tests).
std::string FormatLogLine(LogLevel level, std::string_view message,
                          std::initializer_list<LogField> fields);

}  // namespace tessera

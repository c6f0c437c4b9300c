#pragma once
// The audit log: one JSON object per line in S/audit/audit.log, rotated by size
// (audit.log.1 ... audit.log.N, oldest dropped), and copied to journald when
// its socket exists. Thread-safe.
//
//   AuditLog audit(layout.state_dir + "/audit");
//   audit.Write({{"kind", "lifecycle"}, {"qube", "work"}, {"state", "running"}});

#include <cstdint>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/unique_fd.h"

namespace tessera::daemon {

struct AuditOptions {
  uint64_t max_bytes = 10u << 20;  // rotate when the current file would exceed this
  int keep_files = 5;              // rotated files kept beside the current one
  bool journald = true;            // also sd_journal_send when journald runs
};

class AuditLog {
 public:
  // Creates `dir` (0700). Fails if the log cannot be opened.
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& dir, AuditOptions options = {});

  // Adds "ts" (RFC 3339 with microseconds, UTC) and appends one line. Write
  // failures are logged to stderr, never thrown: auditing must not take the
  // daemon down, but a failure is visible.
  void Write(nlohmann::json record);

  const std::string& path() const { return path_; }

 private:
  AuditLog(std::string dir, AuditOptions options) : dir_(std::move(dir)), options_(options) {}
  Status OpenCurrent();
  void Rotate();

  std::mutex mu_;
  std::string dir_;
  std::string path_;
  AuditOptions options_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  bool journald_ = false;
};

// "2026-11-22T13:00:00.123456Z"
std::string NowRfc3339();

}  // namespace tessera::daemon

#include "daemon/audit.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "common/fs.h"
#include "common/log.h"
#include "common/json_access.h"

namespace tessera::daemon {

std::string NowRfc3339() {
  auto now = std::chrono::system_clock::now();
  auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(micros / 1000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(micros % 1000000));
  return buf;
}

Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& dir, AuditOptions options) {
  TRY_CTX(MakeDirs(dir, 0700), "create audit directory");
  std::unique_ptr<AuditLog> log(new AuditLog(dir, options));
  log->path_ = dir + "/audit.log";
  TRY(log->OpenCurrent());
  log->journald_ = options.journald && ::access("/run/systemd/journal/socket", F_OK) == 0;
  return log;
}

Status AuditLog::OpenCurrent() {
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Err(Error::FromErrno("open " + path_));
  fd_.reset(fd);
  struct stat st;
  size_ = ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  return Ok();
}

void AuditLog::Rotate() {
  // audit.log.(N-1) -> .N, ..., audit.log -> .1; the oldest falls off.
  for (int i = options_.keep_files - 1; i >= 1; --i) {
    std::string from = path_ + "." + std::to_string(i);
    std::string to = path_ + "." + std::to_string(i + 1);
    ::rename(from.c_str(), to.c_str());
  }
  if (options_.keep_files >= 1) {
    ::rename(path_.c_str(), (path_ + ".1").c_str());
  } else {
    ::unlink(path_.c_str());
  }
  if (auto status = OpenCurrent(); !status) {
    Log(LogLevel::kError, "audit log rotation failed", {{"error", status.error().ToString()}});
  }
}

void AuditLog::Write(nlohmann::json record) {
  record["ts"] = NowRfc3339();
  std::string line = DumpJson(record) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  if (size_ > 0 && size_ + line.size() > options_.max_bytes) Rotate();
  if (fd_) {
    ssize_t n = ::write(fd_.get(), line.data(), line.size());
    if (n != static_cast<ssize_t>(line.size())) {
      Log(LogLevel::kError, "audit log write failed", {{"path", path_}});
    } else {
      size_ += line.size();
    }
  }
  if (journald_) {
    // Best effort: a structured copy for hosts that collect the journal.
    std::string kind = record.value("kind", "");
    sd_journal_send("MESSAGE=%s", line.substr(0, line.size() - 1).c_str(),
                    "SYSLOG_IDENTIFIER=tesserad", "TESSERA_AUDIT_KIND=%s", kind.c_str(),
                    "PRIORITY=%d", 6, nullptr);
  }
}

}  // namespace tessera::daemon

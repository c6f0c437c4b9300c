// Compiled seccomp programs kept for reuse: in memory for the process, and on
// disk (runtime dir) for the next process of the same binary.

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "cell/seccomp_filter.h"
#include "common/fs.h"
#include "common/log.h"

namespace tessera::cell {
namespace {

constexpr char kMagic[8] = {'T', 'S', 'B', 'P', 'F', '1', '\n', '\0'};
constexpr size_t kMaxInstructions = 65536;  // BPF_MAXINSNS is 4096; generous

uint64_t Fnv1a(std::string_view bytes, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void PutU32(std::string& out, uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void PutU64(std::string& out, uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); }

bool GetU32(std::string_view& in, uint32_t* v) {
  if (in.size() < 4) return false;
  std::memcpy(v, in.data(), 4);
  in.remove_prefix(4);
  return true;
}

bool GetProgram(std::string_view& in, uint32_t count, std::vector<sock_filter>* out) {
  if (count > kMaxInstructions || in.size() < size_t{count} * sizeof(sock_filter)) return false;
  out->resize(count);
  if (count > 0) std::memcpy(out->data(), in.data(), size_t{count} * sizeof(sock_filter));
  in.remove_prefix(size_t{count} * sizeof(sock_filter));
  return true;
}

// What the cached file depends on besides the options: this very binary
// (the allow-list and libseccomp are compiled into it) and this boot (the
// kernel libseccomp asked about its seccomp API).
std::optional<std::string> ExecutableIdentity() {
  struct stat st {};
  if (::stat("/proc/self/exe", &st) != 0) return std::nullopt;
  auto boot = ReadFile("/proc/sys/kernel/random/boot_id", 64);
  if (!boot) return std::nullopt;
  return *boot + ":" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

std::string OptionsText(const SeccompOptions& options) {
  return std::string(options.nested_userns ? "nested" : "flat") + "-" +
         std::to_string(static_cast<int>(options.mode));
}

}  // namespace

Result<SeccompProgram> LoadOrBuildSeccompFilter(const SeccompOptions& options,
                                                const std::string& dir) {
  auto identity = ExecutableIdentity();
  if (dir.empty() || !identity) return BuildSeccompFilter(options);
  char key[17];
  std::snprintf(key, sizeof(key), "%016llx",
                static_cast<unsigned long long>(Fnv1a(*identity + "|" + OptionsText(options))));
  std::string path = dir + "/" + OptionsText(options) + "-" + key + ".bpf";
  if (auto text = ReadFile(path, 1u << 20)) {
    if (auto cached = ParseSeccompProgram(options, *text)) return std::move(*cached);
    Log(LogLevel::kWarn, "seccomp cache file does not match; rebuilding it", {{"path", path}});
  }
  SeccompProgram built = TRY(BuildSeccompFilter(options));
  // Best effort: a cache that cannot be written costs time, not correctness.
  Status stored = MakeDirs(dir, 0700);
  if (stored) {
    stored = WriteFileAtomic(path, SerializeSeccompProgram(options, built), 0600,
                             Durability::kCrashSafe);
  }
  if (!stored) {
    Log(LogLevel::kDebug, "seccomp cache not written",
        {{"path", path}, {"error", stored.error().ToString()}});
  }
  return built;
}

std::string SerializeSeccompProgram(const SeccompOptions& options, const SeccompProgram& program) {
  std::string out(kMagic, sizeof(kMagic));
  PutU32(out, options.nested_userns ? 1 : 0);
  PutU32(out, static_cast<uint32_t>(program.mode));
  PutU32(out, static_cast<uint32_t>(program.instructions.size()));
  PutU32(out, static_cast<uint32_t>(program.answers.size()));
  for (const std::vector<sock_filter>* part : {&program.instructions, &program.answers}) {
    if (part->empty()) continue;  // data() may be null
    out.append(reinterpret_cast<const char*>(part->data()), part->size() * sizeof(sock_filter));
  }
  PutU64(out, Fnv1a(out));
  return out;
}

std::optional<SeccompProgram> ParseSeccompProgram(const SeccompOptions& options,
                                                  std::string_view bytes) {
  if (bytes.size() < sizeof(kMagic) + 16 + 8) return std::nullopt;
  std::string_view body = bytes.substr(0, bytes.size() - 8);
  uint64_t sum = 0;
  std::memcpy(&sum, bytes.data() + body.size(), 8);
  if (sum != Fnv1a(body) || std::memcmp(body.data(), kMagic, sizeof(kMagic)) != 0) {
    return std::nullopt;
  }
  body.remove_prefix(sizeof(kMagic));
  uint32_t nested = 0, mode = 0, n_instructions = 0, n_answers = 0;
  if (!GetU32(body, &nested) || !GetU32(body, &mode) || !GetU32(body, &n_instructions) ||
      !GetU32(body, &n_answers)) {
    return std::nullopt;
  }
  if (nested != (options.nested_userns ? 1u : 0u) || mode != static_cast<uint32_t>(options.mode)) {
    return std::nullopt;
  }
  SeccompProgram program;
  program.mode = options.mode;
  if (!GetProgram(body, n_instructions, &program.instructions) ||
      !GetProgram(body, n_answers, &program.answers) || !body.empty() ||
      program.instructions.empty() ||
      (options.mode == SeccompMode::kNotify) != !program.answers.empty()) {
    return std::nullopt;
  }
  return program;
}

Result<std::shared_ptr<const SeccompProgram>> CachedSeccompFilter(
    const SeccompOptions& options, const std::string& disk_cache_dir) {
  static std::mutex mu;
  static std::map<std::tuple<bool, SeccompMode>, std::shared_ptr<const SeccompProgram>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(options.nested_userns, options.mode);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  auto prog = std::make_shared<const SeccompProgram>(
      TRY(LoadOrBuildSeccompFilter(options, disk_cache_dir)));
  cache.emplace(key, prog);
  return prog;
}

}  // namespace tessera::cell

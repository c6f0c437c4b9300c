// Policy loading: file selection and order, directives, error collection.
// All I/O goes through PolicyFileSystem (file_system.h).

#include <algorithm>
#include <map>
#include <unordered_map>

#include "policy/policy.h"

namespace tessera::policy {

std::string_view ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kSyntax:
      return "PolicySyntaxError";
    case ErrorKind::kAccessDenied:
      return "AccessDenied";
    case ErrorKind::kRequest:
      return "RequestError";
    case ErrorKind::kInvalidRequest:
      return "AssertionError";
  }
  return "?";
}

std::string LoadError::ToString() const {
  return file + ":" + std::to_string(line) + ": " + message;
}

std::string LoadError::ToPathString() const {
  if (path.empty()) return ToString();
  return path + ":" + std::to_string(line) + ": " + message;
}

LoadSpec DirectorySpec(const PolicyDirs& dirs) {
  LoadSpec spec;
  if (!dirs.runtime_dir.empty()) {
    spec.dirs.push_back({dirs.runtime_dir, "run:", /*optional=*/true});
  }
  spec.dirs.push_back({dirs.policy_dir, "", /*optional=*/false});
  spec.compat_dir = dirs.compat_dir;
  // Legacy files are named by their SERVICE+ARG file name, as in-memory
  // compat files are (LoadMemory).
  if (!dirs.compat_dir.empty()) spec.extra_display_roots.push_back({dirs.compat_dir, ""});
  return spec;
}

namespace {

// Bounds that keep a hostile or broken policy from exhausting memory or stack.
constexpr size_t kMaxIncludeDepth = 32;
constexpr size_t kMaxRules = 1'000'000;
constexpr size_t kMaxTotalBytes = 256u << 20;
constexpr size_t kMaxFileReads = 100'000;  // includes of includes can grow exponentially
constexpr size_t kMaxErrors = 1000;

bool IsPolicyFileNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

bool IsRpcNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.' || c == '_';
}

// Python's pathlib suffix: from the last '.', if it is neither first nor last.
std::string_view Suffix(std::string_view name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == name.size()) return {};
  return name.substr(dot);
}

// Python's str(PurePosixPath(path)): "//" and "." parts removed, ".." kept.
std::string PurePosixPath(std::string_view path) {
  std::string out;
  if (path.starts_with("//") && !path.starts_with("///")) {
    out = "//";
  } else if (path.starts_with('/')) {
    out = "/";
  }
  const size_t root = out.size();
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    const std::string_view part = path.substr(i, j - i);
    if (!part.empty() && part != ".") {
      if (out.size() > root) out += '/';
      out += part;
    }
    i = j + 1;
  }
  if (out.empty()) out = ".";
  return out;
}

// The include paths Qubes' StringPolicy accepts: NAME or include/NAME.
bool IsNameOrIncludeName(std::string_view key) {
  const size_t slash = key.find('/');
  if (slash == std::string_view::npos) return true;
  return key.starts_with("include/") && key.find('/', slash + 1) == std::string_view::npos;
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out(dir);
  if (!out.ends_with('/')) out += '/';
  out += name;
  return out;
}

}  // namespace

class PolicyBuilder {
 public:
  PolicyBuilder(const PolicyFileSystem& fs, const LoadSpec& spec)
      : fs_(fs), spec_(spec), real_paths_(fs.HasRealPaths()) {}

  tl::expected<Policy, std::vector<LoadError>> Run() {
    for (const auto& d : spec_.dirs) {
      roots_.push_back({fs_.Resolve("", d.path), d.display_prefix});
    }
    for (const auto& d : spec_.extra_display_roots) {
      roots_.push_back({fs_.Resolve("", d.path), d.display_prefix});
    }
    compat_dir_ = spec_.compat_dir.empty() ? "" : fs_.Resolve("", spec_.compat_dir);
    LoadTopDirs();
    const std::string entry_base =
        spec_.entry_base.empty() ? "" : fs_.Resolve("", spec_.entry_base);
    for (const auto& entry : spec_.entry_files) {
      const std::string path = fs_.Resolve(entry_base, entry);
      if (fs_.Stat(path) != PolicyFileSystem::Kind::kFile) {
        AddError(ErrorKind::kAccessDenied, Display(path), 0, "not a file: " + path);
        continue;
      }
      LoadFile(path, entry_base, "", 0);
    }
    if (!errors_.empty()) return tl::unexpected(std::move(errors_));
    policy_.BuildIndex();
    return std::move(policy_);
  }

 private:
  struct Root {
    std::string path;
    std::string prefix;
  };

  void AddError(ErrorKind kind, std::string file, int line, std::string message) {
    if (errors_.size() >= kMaxErrors) {
      if (!aborted_) {
        errors_.push_back({ErrorKind::kSyntax, file, line, "too many errors, giving up", ""});
      }
      aborted_ = true;
      return;
    }
    auto it = display_to_path_.find(file);
    std::string path = it != display_to_path_.end() ? it->second : "";
    errors_.push_back({kind, std::move(file), line, std::move(message), std::move(path)});
  }

  // Also remembers which real path a display name stands for (for errors).
  std::string Display(const std::string& path) {
    std::string shown = DisplayOf(path);
    if (real_paths_) display_to_path_.try_emplace(shown, path);
    return shown;
  }

  std::string DisplayOf(const std::string& path) const {
    for (const auto& r : roots_) {
      if (r.path.empty()) continue;
      if (path.size() > r.path.size() && path.starts_with(r.path) &&
          (r.path.ends_with('/') || path[r.path.size()] == '/')) {
        const size_t skip = r.path.size() + (r.path.ends_with('/') ? 0 : 1);
        return r.prefix + path.substr(skip);
      }
    }
    return path;
  }

  uint32_t FileIndex(const std::string& display) {
    auto [it, inserted] = file_index_.try_emplace(display, 0);
    if (inserted) {
      it->second = static_cast<uint32_t>(policy_.files_.size());
      policy_.files_.push_back(display);
    }
    return it->second;
  }

  // The *.policy files of `dir`, sorted by name. Files with names outside
  // [0-9a-z_.-] make the whole policy fail (as in Qubes), so that a file the
  // administrator meant to be read is never silently skipped.
  std::vector<std::string> SelectPolicyFiles(const std::string& dir, const std::string& where,
                                             int line) {
    std::vector<std::string> names;
    auto listed = fs_.List(dir);
    if (!listed) {
      AddError(ErrorKind::kAccessDenied, where.empty() ? Display(dir) : where, line,
               "cannot read policy directory: " + listed.error().ToString());
      return names;
    }
    for (auto& name : *listed) {
      if (name.starts_with('.') || Suffix(name) != ".policy") continue;
      if (fs_.Stat(JoinPath(dir, name)) != PolicyFileSystem::Kind::kFile) continue;
      if (!std::all_of(name.begin(), name.end(), IsPolicyFileNameChar)) {
        AddError(ErrorKind::kAccessDenied, Display(JoinPath(dir, name)), 0,
                 "invalid filename (allowed characters: 0-9 a-z _ . -)");
        continue;
      }
      names.push_back(std::move(name));
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  void LoadTopDirs() {
    std::vector<std::pair<std::string, size_t>> selected;  // basename, dir index
    std::unordered_map<std::string, bool> seen;
    for (size_t i = 0; i < spec_.dirs.size(); ++i) {
      const std::string& dir = roots_[i].path;
      const auto kind = fs_.Stat(dir);
      if (kind == PolicyFileSystem::Kind::kMissing && spec_.dirs[i].optional) continue;
      if (kind != PolicyFileSystem::Kind::kDirectory) {
        AddError(ErrorKind::kAccessDenied, dir, 0,
                 "policy directory does not exist or is not a directory");
        continue;
      }
      for (auto& name : SelectPolicyFiles(dir, "", 0)) {
        if (seen.emplace(name, true).second) selected.emplace_back(std::move(name), i);
      }
    }
    std::sort(selected.begin(), selected.end());
    for (const auto& [name, i] : selected) {
      LoadFile(JoinPath(roots_[i].path, name), roots_[i].path, "", 0);
    }
  }

  // Common checks before reading any file; returns its text or nullopt.
  std::optional<std::string> Open(const std::string& path, const std::string& from, int line) {
    if (std::find(stack_.begin(), stack_.end(), path) != stack_.end()) {
      std::string chain;
      for (const auto& p : stack_) chain += Display(p) + " -> ";
      AddError(ErrorKind::kSyntax, from, line, "include cycle: " + chain + Display(path));
      return std::nullopt;
    }
    if (aborted_) return std::nullopt;
    if (++file_reads_ > kMaxFileReads) {
      AddError(ErrorKind::kSyntax, from, line, "too many files included (more than 100000)");
      aborted_ = true;
      return std::nullopt;
    }
    if (stack_.size() >= kMaxIncludeDepth) {
      AddError(ErrorKind::kSyntax, from, line, "includes nested too deeply");
      return std::nullopt;
    }
    auto text = fs_.Read(path);
    if (!text) {
      AddError(ErrorKind::kAccessDenied, from.empty() ? Display(path) : from, line,
               "cannot read " + Display(path) + ": " + text.error().ToString());
      return std::nullopt;
    }
    total_bytes_ += text->size();
    if (total_bytes_ > kMaxTotalBytes) {
      AddError(ErrorKind::kSyntax, Display(path), 0, "policy too large");
      aborted_ = true;
      return std::nullopt;
    }
    return std::move(*text);
  }

  bool AddRule(Rule rule) {
    if (policy_.rules_.size() >= kMaxRules) {
      if (!aborted_)
        AddError(ErrorKind::kSyntax, policy_.files_[rule.file_index], rule.line,
                 "policy too large (more than 1000000 rules)");
      aborted_ = true;
      return false;
    }
    policy_.rules_.push_back(std::move(rule));
    return true;
  }

  // Calls fn(line, lineno) for each line, without its line end.
  template <class Fn>
  void ForEachLine(std::string_view text, Fn&& fn) const {
    const bool universal = spec_.flavor == LoadSpec::Flavor::kFilePolicy;
    // The end of the line starting at `from` (not find_first_of: it calls
    // memchr on the set for every character of the text).
    auto line_end = [&](size_t from) {
      if (!universal) {
        const size_t end = text.find('\n', from);
        return end == std::string_view::npos ? text.size() : end;
      }
      size_t end = from;
      while (end < text.size() && text[end] != '\n' && text[end] != '\r') ++end;
      return end;
    };
    int lineno = 0;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = line_end(pos);
      ++lineno;
      if (!fn(text.substr(pos, end - pos), lineno)) return;
      pos = end + 1;
      if (universal && end < text.size() && text[end] == '\r' && pos < text.size() &&
          text[pos] == '\n') {
        ++pos;
      }
    }
  }

  // Resolves an !include-style path; reports and returns nullopt unless it is
  // of `want` kind.
  std::optional<std::string> ResolveInclude(const std::string& base, std::string_view param,
                                            PolicyFileSystem::Kind want, const std::string& from,
                                            int line) {
    if (spec_.flavor == LoadSpec::Flavor::kStringPolicy && !compat_ &&
        want == PolicyFileSystem::Kind::kFile && !IsNameOrIncludeName(PurePosixPath(param))) {
      AddError(ErrorKind::kSyntax, from, line,
               "invalid path " + std::string(param) +
                   ", only NAME and include/NAME can be included in an in-memory policy");
      return std::nullopt;
    }
    std::string path = fs_.Resolve(base, param);
    if (fs_.Stat(path) != want) {
      AddError(ErrorKind::kSyntax, from, line,
               std::string(want == PolicyFileSystem::Kind::kFile ? "not a file: "
                                                                 : "not a directory: ") +
                   path);
      return std::nullopt;
    }
    return path;
  }

  void LoadFile(const std::string& path, const std::string& base, const std::string& from,
                int from_line) {
    auto text = Open(path, from, from_line);
    if (!text) return;
    stack_.push_back(path);
    const std::string display = Display(path);
    const uint32_t file_index = FileIndex(display);
    // Grow geometrically but at least to the file's line count: Rules are
    // large, and moving them on every doubling is a visible part of a load.
    auto& rules = policy_.rules_;
    const size_t lines = static_cast<size_t>(std::count(text->begin(), text->end(), '\n')) + 1;
    if (rules.capacity() < rules.size() + lines) {
      rules.reserve(std::max(rules.capacity() * 2, rules.size() + lines));
    }
    ForEachLine(*text, [&](std::string_view raw, int lineno) {
      if (aborted_) return false;
      std::string_view line = StripSpace(raw);
      if (line.empty() || line[0] == '#') return true;
      if (line[0] == '!') {
        Directive(line, base, display, lineno);
        return true;
      }
      auto rule = ParseRule(line);
      if (!rule) {
        AddError(ErrorKind::kSyntax, display, lineno, std::move(rule.error()));
        return true;
      }
      rule->file_index = file_index;
      rule->line = lineno;
      return AddRule(std::move(*rule));
    });
    stack_.pop_back();
  }

  void Directive(std::string_view line, const std::string& base, const std::string& display,
                 int lineno) {
    const auto f = SplitFields(line);
    const std::string_view directive = f[0];
    const size_t nparams = f.size() - 1;
    auto arity = [&](size_t want) {
      if (nparams == want) return true;
      AddError(ErrorKind::kSyntax, display, lineno, "invalid number of params");
      return false;
    };
    if (directive == "!include") {
      if (!arity(1)) return;
      if (auto path = ResolveInclude(base, f[1], PolicyFileSystem::Kind::kFile, display, lineno)) {
        LoadFile(*path, base, display, lineno);
      }
    } else if (directive == "!include-dir") {
      if (!arity(1)) return;
      auto dir = ResolveInclude(base, f[1], PolicyFileSystem::Kind::kDirectory, display, lineno);
      if (!dir) return;
      for (const auto& name : SelectPolicyFiles(*dir, display, lineno)) {
        LoadFile(JoinPath(*dir, name), base, display, lineno);
      }
    } else if (directive == "!include-service") {
      if (!arity(3)) return;
      std::optional<std::string> service, argument;
      if (auto ok = ValidateServiceArgument(f[1], f[2], service, argument); !ok) {
        AddError(ErrorKind::kSyntax, display, lineno, ok.error());
        return;
      }
      if (auto path = ResolveInclude(base, f[3], PolicyFileSystem::Kind::kFile, display, lineno)) {
        LoadServiceFile(f[1], f[2], *path, base, display, lineno);
      }
    } else if (directive == "!compat-4.0") {
      if (!arity(0)) return;
      Compat40(display, lineno);
    } else {
      AddError(ErrorKind::kSyntax, display, lineno, "invalid directive");
    }
  }

  // A file in the old per-service syntax (SOURCE TARGET ACTION[,PARAMS]).
  void LoadServiceFile(std::string_view service, std::string_view argument, const std::string& path,
                       const std::string& base, const std::string& from, int from_line) {
    auto text = Open(path, from, from_line);
    if (!text) return;
    stack_.push_back(path);
    const std::string display = Display(path);
    const uint32_t file_index = FileIndex(display);
    ForEachLine(*text, [&](std::string_view raw, int lineno) {
      if (aborted_) return false;
      std::string_view stripped = StripSpace(raw);
      if (stripped.empty() || stripped[0] == '#') return true;
      // The R4.0 spellings: $include:PATH, $anyvm, commas between parameters.
      std::string line(stripped);
      for (size_t p = 0; (p = line.find("$include:", p)) != std::string::npos; p += 9) {
        line.replace(p, 9, "!include ");
      }
      std::replace(line.begin(), line.end(), '$', '@');
      std::replace(line.begin(), line.end(), ',', ' ');
      if (line[0] == '!') {
        const auto f = SplitFields(line);
        if (f[0] != "!include") {
          AddError(ErrorKind::kSyntax, display, lineno, "invalid directive");
        } else if (f.size() != 2) {
          AddError(ErrorKind::kSyntax, display, lineno, "invalid number of params");
        } else if (auto inc =
                       ResolveInclude(base, f[1], PolicyFileSystem::Kind::kFile, display, lineno)) {
          LoadServiceFile(service, argument, *inc, base, display, lineno);
        }
        return true;
      }
      auto rule = ParseServiceRule(service, argument, line);
      if (!rule) {
        AddError(ErrorKind::kSyntax, display, lineno, std::move(rule.error()));
        return true;
      }
      rule->file_index = file_index;
      rule->line = lineno;
      return AddRule(std::move(*rule));
    });
    stack_.pop_back();
  }

  // !compat-4.0: the R4.0 per-service files, ordered by service, then
  // argument with the no-argument file last; each SERVICE+ARG file is followed
  // by an implicit deny, as R4.0 did not fall back from SERVICE+ARG to SERVICE.
  void Compat40(const std::string& display, int lineno) {
    if (compat_ || compat_dir_.empty()) {
      if (compat_) AddError(ErrorKind::kSyntax, display, lineno, "!compat-4.0 is not recursive");
      return;
    }
    // A missing legacy directory contributes no rules (it can only allow).
    if (fs_.Stat(compat_dir_) != PolicyFileSystem::Kind::kDirectory) return;
    auto listed = fs_.List(compat_dir_);
    if (!listed) {
      AddError(ErrorKind::kAccessDenied, display, lineno,
               "cannot read legacy policy directory: " + listed.error().ToString());
      return;
    }
    struct ArgOrder {
      bool operator()(const std::string& a, const std::string& b) const {
        if (a == "*") return false;
        if (b == "*") return true;
        return a < b;
      }
    };
    std::map<std::string, std::map<std::string, std::string, ArgOrder>> services;
    for (const auto& name : *listed) {
      const std::string path = JoinPath(compat_dir_, name);
      if (fs_.Stat(path) != PolicyFileSystem::Kind::kFile) continue;
      const auto suffix = Suffix(name);
      if (suffix == ".rpmsave" || suffix == ".rpmnew" || suffix == ".swp") continue;
      if (name.starts_with('.')) continue;
      if (!std::all_of(name.begin(), name.end(), IsRpcNameChar)) continue;
      const size_t plus = name.find('+');
      if (plus == std::string::npos) {
        services[name]["*"] = path;
      } else {
        services[name.substr(0, plus)][name.substr(plus)] = path;
      }
    }
    compat_ = true;
    for (const auto& [service, args] : services) {
      for (const auto& [argument, path] : args) {
        std::optional<std::string> s, a;
        if (auto ok = ValidateServiceArgument(service, argument, s, a); !ok) {
          AddError(ErrorKind::kSyntax, display, lineno, ok.error());
          continue;
        }
        LoadServiceFile(service, argument, path, compat_dir_, display, lineno);
        if (argument == "*") continue;
        const uint32_t file_index = FileIndex(Display(path));
        for (const char* line : {"@anyvm @anyvm deny", "@anyvm @adminvm deny"}) {
          auto rule = ParseServiceRule(service, argument, line);
          rule->file_index = file_index;
          rule->line = 0;
          AddRule(std::move(*rule));
        }
      }
    }
    compat_ = false;
  }

  const PolicyFileSystem& fs_;
  const LoadSpec& spec_;
  std::vector<Root> roots_;
  std::string compat_dir_;
  Policy policy_;
  std::unordered_map<std::string, uint32_t> file_index_;
  std::unordered_map<std::string, std::string> display_to_path_;
  bool real_paths_ = true;
  std::vector<LoadError> errors_;
  std::vector<std::string> stack_;
  size_t total_bytes_ = 0;
  size_t file_reads_ = 0;
  bool aborted_ = false;
  bool compat_ = false;
};

tl::expected<Policy, std::vector<LoadError>> Policy::Load(const PolicyFileSystem& fs,
                                                          const LoadSpec& spec) {
  return PolicyBuilder(fs, spec).Run();
}

tl::expected<Policy, std::vector<LoadError>> Policy::LoadMemory(
    const std::map<std::string, std::string, std::less<>>& files,
    const std::map<std::string, std::string, std::less<>>& compat_files) {
  constexpr std::string_view kCompatDir = "compat-4.0";
  MemoryFileSystem fs(files);
  for (const auto& [name, text] : compat_files) fs.Set(JoinPath(kCompatDir, name), text);
  LoadSpec spec;
  spec.entry_files = {"__main__"};
  spec.compat_dir = std::string(kCompatDir);
  spec.extra_display_roots = {{std::string(kCompatDir), ""}};
  spec.flavor = LoadSpec::Flavor::kStringPolicy;
  return Load(fs, spec);
}

std::string Policy::Where(const Rule& rule) const {
  return files_[rule.file_index] + ":" + std::to_string(rule.line);
}

void Policy::BuildIndex() {
  by_service_.clear();
  any_service_.clear();
  by_service_.reserve(rules_.size() / 2 + 1);
  for (uint32_t i = 0; i < rules_.size(); ++i) {
    if (rules_[i].service) {
      by_service_[*rules_[i].service].push_back(i);
    } else {
      any_service_.push_back(i);
    }
  }
}

}  // namespace tessera::policy

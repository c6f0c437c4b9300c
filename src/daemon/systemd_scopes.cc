#include "daemon/systemd_scopes.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <systemd/sd-bus.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "common/fs.h"
#include "common/log.h"
#include "common/scope_guard.h"

namespace tessera::daemon {
namespace {

constexpr const char* kPrivateSocket = "/run/systemd/private";
constexpr const char* kService = "org.freedesktop.systemd1";
constexpr const char* kObject = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";
constexpr uint64_t kCallTimeoutUsec = 10'000'000;
constexpr auto kJobTimeout = std::chrono::seconds(10);

struct BusUnref {
  void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
struct SlotUnref {
  void operator()(sd_bus_slot* s) const { sd_bus_slot_unref(s); }
};
using Bus = std::unique_ptr<sd_bus, BusUnref>;
using Message = std::unique_ptr<sd_bus_message, MessageUnref>;
using Slot = std::unique_ptr<sd_bus_slot, SlotUnref>;

Error BusError(const std::string& what, int r, const sd_bus_error* error = nullptr) {
  std::string message = what;
  if (error != nullptr && sd_bus_error_is_set(error)) {
    message += ": " + std::string(error->name) + ": " + (error->message ? error->message : "");
  } else {
    message += ": " + std::string(std::strerror(-r));
  }
  return Error(std::move(message), -r);
}

// A connection of its own per placement: systemd sends every signal to each
// private connection, so one kept open between starts would pile up signals
// nobody reads.
Result<Bus> Connect(const std::string& address) {
  sd_bus* raw = nullptr;
  int r = sd_bus_new(&raw);
  if (r < 0) return Err(BusError("sd_bus_new", r));
  Bus bus(raw);
  if ((r = sd_bus_set_address(bus.get(), address.c_str())) < 0 ||
      (r = sd_bus_start(bus.get())) < 0) {
    return Err(BusError("connect to systemd at " + address, r));
  }
  return bus;
}

int AppendProperty(sd_bus_message* m, const ScopeProperty& p) {
  int r = sd_bus_message_open_container(m, 'r', "sv");
  if (r < 0 || (r = sd_bus_message_append_basic(m, 's', p.name.c_str())) < 0) return r;
  if (auto* s = std::get_if<std::string>(&p.value)) {
    r = sd_bus_message_append(m, "v", "s", s->c_str());
  } else if (auto* t = std::get_if<uint64_t>(&p.value)) {
    r = sd_bus_message_append(m, "v", "t", *t);
  } else if (auto* b = std::get_if<bool>(&p.value)) {
    r = sd_bus_message_append(m, "v", "b", static_cast<int>(*b));
  } else if (auto* au = std::get_if<std::vector<uint32_t>>(&p.value)) {
    if ((r = sd_bus_message_open_container(m, 'v', "au")) < 0 ||
        (r = sd_bus_message_append_array(m, 'u', au->data(), au->size() * sizeof(uint32_t))) < 0) {
      return r;
    }
    r = sd_bus_message_close_container(m);
  } else {
    const auto& list = std::get<ScopeProperty::PathValues>(p.value);
    if ((r = sd_bus_message_open_container(m, 'v', "a(st)")) < 0 ||
        (r = sd_bus_message_open_container(m, 'a', "(st)")) < 0) {
      return r;
    }
    for (const auto& [path, value] : list) {
      if ((r = sd_bus_message_append(m, "(st)", path.c_str(), value)) < 0) return r;
    }
    if ((r = sd_bus_message_close_container(m)) < 0) return r;
    r = sd_bus_message_close_container(m);
  }
  if (r < 0) return r;
  return sd_bus_message_close_container(m);
}

// StartTransientUnit(name, "fail", properties, no auxiliary units): the job's
// object path.
Result<std::string> StartUnit(sd_bus* bus, const std::string& unit,
                              const std::vector<ScopeProperty>& properties, sd_bus_error* error) {
  sd_bus_message* raw = nullptr;
  int r =
      sd_bus_message_new_method_call(bus, &raw, kService, kObject, kManager, "StartTransientUnit");
  if (r < 0) return Err(BusError("StartTransientUnit", r));
  Message call(raw);
  r = sd_bus_message_append(call.get(), "ss", unit.c_str(), "fail");
  if (r >= 0) r = sd_bus_message_open_container(call.get(), 'a', "(sv)");
  for (size_t i = 0; r >= 0 && i < properties.size(); ++i)
    r = AppendProperty(call.get(), properties[i]);
  if (r >= 0) r = sd_bus_message_close_container(call.get());
  if (r >= 0) r = sd_bus_message_append(call.get(), "a(sa(sv))", 0);
  if (r < 0) return Err(BusError("StartTransientUnit " + unit + ": message", r));
  sd_bus_message* reply_raw = nullptr;
  r = sd_bus_call(bus, call.get(), kCallTimeoutUsec, error, &reply_raw);
  if (r < 0) return Err(BusError("StartTransientUnit " + unit, r, error));
  Message reply(reply_raw);
  const char* job = nullptr;
  if ((r = sd_bus_message_read(reply.get(), "o", &job)) < 0) {
    return Err(BusError("StartTransientUnit " + unit + ": reply", r));
  }
  return std::string(job);
}

struct JobWait {
  std::string path;
  std::string result;  // "" until JobRemoved for `path` arrived
};

int OnJobRemoved(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto* wait = static_cast<JobWait*>(userdata);
  uint32_t id = 0;
  const char *path = nullptr, *unit = nullptr, *result = nullptr;
  if (sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0) return 0;
  if (path != nullptr && wait->path == path) wait->result = result ? result : "?";
  return 0;
}

// The v2 cgroup of `pid` (the line without controllers), absolute under the
// cgroup root.
Result<std::string> CgroupOf(pid_t pid) {
  std::string text = TRY(ReadFile("/proc/" + std::to_string(pid) + "/cgroup", 1 << 16));
  for (const cell::ProcCgroupLine& line : cell::ParseProcCgroup(text)) {
    if (line.controllers.empty()) {
      return std::string(cell::kDefaultCgroupRoot) + (line.path == "/" ? "" : line.path);
    }
  }
  return Err(Error("no cgroup v2 membership of pid " + std::to_string(pid), ENOENT));
}

}  // namespace

std::vector<ScopeProperty> ScopeProperties(const std::string& description, pid_t pid,
                                           const cell::CgroupLimits& limits) {
  std::vector<ScopeProperty> p = {
      {"Description", description},
      {"Slice", std::string(cell::kQubeSlice)},
      {"PIDs", std::vector<uint32_t>{static_cast<uint32_t>(pid)}},
      // A failed scope (a qube killed by the OOM killer) must not block the
      // qube's next start under the same name.
      {"CollectMode", std::string("inactive-or-failed")},
      {"MemoryAccounting", true},
      {"TasksAccounting", true},
      {"TasksMax", limits.pids_max ? uint64_t{limits.pids_max} : UINT64_MAX},
      {"CPUWeight", uint64_t{limits.cpu_weight}},
      {"IOWeight", uint64_t{limits.io_weight}},
  };
  if (limits.memory_bytes != 0) {
    p.push_back({"MemoryMax", limits.memory_bytes});
    p.push_back({"MemorySwapMax", uint64_t{0}});
  }
  if (limits.cpus != 0) p.push_back({"CPUQuotaPerSecUSec", uint64_t{limits.cpus} * 1'000'000});
  if (!limits.io_device.empty()) {
    std::string device = "/dev/block/" + limits.io_device;
    const std::pair<const char*, uint64_t> io[] = {{"IOReadBandwidthMax", limits.io_max.read_bps},
                                                   {"IOWriteBandwidthMax", limits.io_max.write_bps},
                                                   {"IOReadIOPSMax", limits.io_max.read_iops},
                                                   {"IOWriteIOPSMax", limits.io_max.write_iops}};
    for (const auto& [name, value] : io) {
      if (value != 0) p.push_back({name, ScopeProperty::PathValues{{device, value}}});
    }
  }
  return p;
}

std::shared_ptr<SystemdScopes> SystemdScopes::Detect(std::string* why) {
  struct stat st;
  if (::stat("/run/systemd/system", &st) != 0) {
    *why = "systemd is not this host's init (no /run/systemd/system)";
    return nullptr;
  }
  struct statfs fs;
  if (::statfs(cell::kDefaultCgroupRoot, &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
    *why = std::string(cell::kDefaultCgroupRoot) +
           " is not a cgroup v2 mount (a hybrid or v1 host keeps tessera's own cgroups)";
    return nullptr;
  }
  if (::stat(kPrivateSocket, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    *why = std::string("no systemd private socket at ") + kPrivateSocket;
    return nullptr;
  }
  return std::shared_ptr<SystemdScopes>(
      new SystemdScopes(std::string("unix:path=") + kPrivateSocket));
}

Result<std::string> SystemdScopes::Place(const std::string& unit, const std::string& description,
                                         pid_t pid, const cell::CgroupLimits& limits) {
  Bus bus = TRY(Connect(address_));
  JobWait wait;
  sd_bus_slot* slot_raw = nullptr;
  // Before the call: the job may end before its reply is read.
  int r = sd_bus_match_signal(bus.get(), &slot_raw, nullptr, kObject, kManager, "JobRemoved",
                              OnJobRemoved, &wait);
  if (r < 0) return Err(BusError("match JobRemoved", r));
  Slot slot(slot_raw);
  std::vector<ScopeProperty> properties = ScopeProperties(description, pid, limits);
  for (int attempt = 0;; ++attempt) {
    sd_bus_error error = SD_BUS_ERROR_NULL;
    auto free_error = ScopeGuard([&] { sd_bus_error_free(&error); });
    auto job = StartUnit(bus.get(), unit, properties, &error);
    if (job) {
      wait.path = *job;
      break;
    }
    // A scope of a crashed run (its processes die with it), or one systemd
    // is still stopping: stop it and try again.
    if (!sd_bus_error_has_name(&error, "org.freedesktop.systemd1.UnitExists") || attempt >= 100) {
      return Err(std::move(job).error());
    }
    if (attempt == 0) Log(LogLevel::kInfo, "stopping a leftover scope", {{"unit", unit}});
    (void)sd_bus_call_method(bus.get(), kService, kObject, kManager, "ResetFailedUnit", nullptr,
                             nullptr, "s", unit.c_str());
    (void)sd_bus_call_method(bus.get(), kService, kObject, kManager, "StopUnit", nullptr, nullptr,
                             "ss", unit.c_str(), "replace");
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto deadline = std::chrono::steady_clock::now() + kJobTimeout;
  while (wait.result.empty()) {
    r = sd_bus_process(bus.get(), nullptr);
    if (r < 0) return Err(BusError("start " + unit + ": bus", r));
    if (r > 0) continue;
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return Err(Error("start " + unit + ": no answer from systemd", ETIMEDOUT));
    r = sd_bus_wait(bus.get(), static_cast<uint64_t>(left.count()));
    if (r < 0 && r != -EINTR) return Err(BusError("start " + unit + ": bus", r));
  }
  if (wait.result != "done") {
    return Err(Error("start " + unit + ": systemd's job ended '" + wait.result + "'", EIO));
  }
  std::string dir = TRY(CgroupOf(pid));
  if (dir.substr(dir.rfind('/') + 1) != unit) {
    return Err(Error(
        "start " + unit + ": pid " + std::to_string(pid) + " is in " + dir + ", not in the unit",
        EIO));
  }
  return dir;
}

}  // namespace tessera::daemon

#include "daemon/admin_methods.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <memory>

#include "common/fs.h"
#include "common/json_access.h"
#include "common/log.h"
#include "config/loader.h"
#include "daemon/apply_plan.h"
#include "daemon/apply_run.h"
#include "daemon/diff.h"
#include "daemon/host_sources.h"
#include "daemon/prefs.h"
#include "daemon/recovery.h"
#include "daemon/volume_methods.h"

namespace tessera::daemon {

using nlohmann::json;
using Call = AdminServer::Call;
namespace codes = wire::codes;

namespace {

tl::unexpected<ApiError> BadRequest(const Error& e) {
  return tl::unexpected<ApiError>(ApiError{codes::kBadRequest, e.message()});
}

// The "qube" parameter (and nothing else unless listed).
ApiResult<std::string> QubeParam(const Call& call, std::initializer_list<std::string_view> keys) {
  if (auto s = OnlyKeys(call.params, keys, call.method); !s) return BadRequest(s.error());
  auto q = RequiredString(call.params, "qube", call.method, 64);
  if (!q) return BadRequest(q.error());
  return *q;
}

// Runs `steps` one after another (each calls its continuation), then `done`.
using Step = std::function<void(std::function<void()> next)>;
void Sequence(std::shared_ptr<std::deque<Step>> steps, std::function<void()> done) {
  if (steps->empty()) return done();
  Step step = std::move(steps->front());
  steps->pop_front();
  step([steps, done] { Sequence(steps, done); });
}

void Info(MethodContext& ctx, Call call) {
  if (auto s = OnlyKeys(call.params, {}, call.method); !s) return ctx.server.Reply(call, BadRequest(s.error()));
  ctx.server.Reply(call, json{{"version", "0.1.0"},
                              {"protocol", wire::kAdminProtocolVersion},
                              {"pid", ::getpid()},
                              {"description", ctx.manager.config().source()},
                              {"state_dir", ctx.layout.state_dir},
                              {"runtime_dir", ctx.layout.runtime_dir},
                              {"audit_log", ctx.audit.path()},
                              {"policy", ctx.policies.Info()},
                              {"peer_uid", call.peer.uid}});
}

void List(MethodContext& ctx, Call call) {
  if (auto s = OnlyKeys(call.params, {}, call.method); !s) return ctx.server.Reply(call, BadRequest(s.error()));
  json list = json::array();
  for (const auto& name : ctx.manager.Names()) list.push_back(ctx.manager.Summary(name));
  ctx.server.Reply(call, json{{"qubes", list}});
}

void Start(MethodContext& ctx, Call call) {
  if (call.params.contains("dispvm")) {
    if (auto s = OnlyKeys(call.params, {"dispvm"}, call.method); !s) {
      return ctx.server.Reply(call, BadRequest(s.error()));
    }
    auto dvm = RequiredString(call.params, "dispvm", call.method, 64);
    if (!dvm) return ctx.server.Reply(call, BadRequest(dvm.error()));
    auto* server = &ctx.server;
    ctx.manager.StartDisposable(*dvm, DisposableOwner::kStart,
                                [server, call](ApiResult<std::string> name) {
                                  if (!name) return server->Reply(call, tl::unexpected(name.error()));
                                  server->Reply(call, json{{"qube", *name}});
                                });
    return;
  }
  auto qube = QubeParam(call, {"qube"});
  if (!qube) return ctx.server.Reply(call, tl::unexpected(qube.error()));
  auto* server = &ctx.server;
  ctx.manager.Start(*qube, [server, call](ApiResult<json> r) { server->Reply(call, std::move(r)); });
}

void StopAll(MethodContext& ctx, Call call, std::chrono::milliseconds grace) {
  ctx.manager.PausePreload();  // or the pool would refill behind us
  std::vector<std::string> names;
  for (const auto& [name, state] : ctx.manager.States()) {
    if (state != QubeState::kHalted) names.push_back(name);
  }
  // Qubes before the netvms they use: non-network qubes first.
  const config::System& system = ctx.manager.config().system();
  std::stable_partition(names.begin(), names.end(), [&](const std::string& n) {
    const config::Qube* c = system.Find(n);
    return c == nullptr || !c->provides_network;
  });
  auto results = std::make_shared<json>(json::array());
  auto steps = std::make_shared<std::deque<Step>>();
  for (const auto& name : names) {
    steps->push_back([&ctx, name, grace, results](std::function<void()> next) {
      ctx.manager.Stop(name, grace, [name, results, next](ApiResult<json> r) {
        results->push_back({{"qube", name}, {"ok", r.has_value()}});
        next();
      });
    });
  }
  auto* server = &ctx.server;
  Sequence(steps, [server, call, results] { server->Reply(call, json{{"stopped", *results}}); });
}

void Stop(MethodContext& ctx, Call call, std::chrono::milliseconds grace) {
  if (auto s = OnlyKeys(call.params, {"qube", "all"}, call.method); !s) {
    return ctx.server.Reply(call, BadRequest(s.error()));
  }
  auto all = BoolOr(call.params, "all", false, call.method);
  if (!all) return ctx.server.Reply(call, BadRequest(all.error()));
  if (*all) {
    if (call.params.contains("qube")) {
      return ctx.server.Reply(call, Fail(codes::kBadRequest, call.method + ": \"qube\" and \"all\" together"));
    }
    return StopAll(ctx, std::move(call), grace);
  }
  auto qube = QubeParam(call, {"qube", "all"});
  if (!qube) return ctx.server.Reply(call, tl::unexpected(qube.error()));
  auto* server = &ctx.server;
  ctx.manager.Stop(*qube, grace, [server, call](ApiResult<json> r) { server->Reply(call, std::move(r)); });
}

void Restart(MethodContext& ctx, Call call) {
  auto qube = QubeParam(call, {"qube"});
  if (!qube) return ctx.server.Reply(call, tl::unexpected(qube.error()));
  auto* server = &ctx.server;
  auto* manager = &ctx.manager;
  std::string name = *qube;
  ctx.manager.Stop(name, ctx.stop_grace, [server, manager, call, name](ApiResult<json> stopped) {
    if (!stopped) return server->Reply(call, std::move(stopped));
    manager->Start(name, [server, call](ApiResult<json> r) { server->Reply(call, std::move(r)); });
  });
}

// The qube's records from the audit log (read on a worker: it may be large).
void Logs(MethodContext& ctx, Call call) {
  auto qube = QubeParam(call, {"qube", "lines"});
  if (!qube) return ctx.server.Reply(call, tl::unexpected(qube.error()));
  auto lines = IntOr(call.params, "lines", 200, 1, 100000, call.method);
  if (!lines) return ctx.server.Reply(call, BadRequest(lines.error()));
  std::string name = *qube;
  if (!ctx.manager.Exists(name) && !IsDisposableName(name)) {
    return ctx.server.Reply(call, tl::unexpected(ctx.manager.NoSuchQube(name)));
  }
  std::string path = ctx.audit.path();
  size_t limit = static_cast<size_t>(*lines);
  auto* server = &ctx.server;
  ctx.pool.Run<json>(
      [path, name, limit] {
        std::deque<json> found;
        for (const std::string& file : {path + ".1", path}) {
          auto text = ReadFile(file, 64u << 20);
          if (!text) continue;
          size_t pos = 0;
          std::string needle = "\"" + name + "\"";
          while (pos < text->size()) {
            size_t end = text->find('\n', pos);
            if (end == std::string::npos) end = text->size();
            std::string_view line(text->data() + pos, end - pos);
            pos = end + 1;
            if (line.find(needle) == std::string_view::npos) continue;  // cheap filter
            json rec = json::parse(line, nullptr, false);
            if (!rec.is_object() || rec.value("qube", "") != name) continue;
            if (rec.value("kind", "") == "admin" && rec.value("result", "") == "ok" &&
                rec.value("method", "") == "qube.list") {
              continue;
            }
            found.push_back(std::move(rec));
            if (found.size() > limit) found.pop_front();
          }
        }
        return json{{"qube", name}, {"lines", json(std::vector<json>(found.begin(), found.end()))}};
      },
      [server, call](json result) { server->Reply(call, std::move(result)); });
}

void Prefs(MethodContext& ctx, Call call) {
  auto qube = QubeParam(call, {"qube", "key", "value"});
  if (!qube) return ctx.server.Reply(call, tl::unexpected(qube.error()));
  auto key = StringOr(call.params, "key", "", call.method, 128);
  if (!key) return ctx.server.Reply(call, BadRequest(key.error()));
  const std::string& name = *qube;
  const config::System& system = ctx.manager.config().system();
  const config::Qube* q = system.Find(name);
  if (q == nullptr) {
    const QubeRecord* record = ctx.manager.Record(name);
    if (record == nullptr) return ctx.server.Reply(call, tl::unexpected(ctx.manager.NoSuchQube(name)));
    return ctx.server.Reply(call, json{{"name", name},
                                       {"class", "disposable"},
                                       {"template", record->dvm_template},
                                       {"source_description", ctx.manager.config().source()}});
  }
  json prefs = QubePrefs(*q);
  if (key->empty()) return ctx.server.Reply(call, prefs);
  if (!prefs.contains(*key)) return ctx.server.Reply(call, Fail(codes::kBadRequest, "no such property: " + *key));
  if (call.params.contains("value")) {
    // The description is declarative: every property comes from it, so an
    // imperative write would be undone by the next apply or restart.
    return ctx.server.Reply(
        call, Fail(codes::kNotSupported, "property " + *key + " of " + name +
                                             " comes from the declarative system description (" +
                                             ctx.manager.config().source() +
                                             "); change it there and run `tessera apply FILE`"));
  }
  ctx.server.Reply(call, json{{*key, prefs[*key]}});
}

void GetSystem(MethodContext& ctx, Call call) {
  if (auto s = OnlyKeys(call.params, {}, call.method); !s) return ctx.server.Reply(call, BadRequest(s.error()));
  ctx.server.Reply(call, json{{"source", ctx.manager.config().source()},
                              {"description", config::ToJson(ctx.manager.config().system())}});
}

void Subscribe(MethodContext& ctx, Call call) {
  if (auto s = OnlyKeys(call.params, {}, call.method); !s) return ctx.server.Reply(call, BadRequest(s.error()));
  uint64_t connection = call.connection;
  ctx.server.Reply(call, json{{"subscribed", true}});
  auto* server = &ctx.server;
  // The subscriber is dropped by the bus when its connection is gone or
  // stops reading (Send fails).
  ctx.events.Subscribe([server, connection](const std::string& event) {
    return server->Send(connection, wire::FrameType::kEvent, 0, 0, event);
  });
}

// system.apply: validated (again: the daemon never trusts a client's model)
// on a worker, planned, then carried out step by step unless a dry run.
class ApplyRun : public std::enable_shared_from_this<ApplyRun> {
 public:
  ApplyRun(MethodContext& ctx, Call call) : ctx_(ctx), call_(std::move(call)) {}

  void Begin() {
    auto& p = call_.params;
    if (auto s =
            OnlyKeys(p, {"description", "source", "dry_run", "restart_on_change"}, call_.method);
        !s) {
      return ctx_.server.Reply(call_, BadRequest(s.error()));
    }
    auto description = RequiredString(p, "description", call_.method, 64u << 20);
    auto source = StringOr(p, "source", "apply", call_.method, 4096);
    auto dry_run = BoolOr(p, "dry_run", true, call_.method);
    if (!description) return ctx_.server.Reply(call_, BadRequest(description.error()));
    if (!source) return ctx_.server.Reply(call_, BadRequest(source.error()));
    if (!dry_run) return ctx_.server.Reply(call_, BadRequest(dry_run.error()));
    auto restart = StringOr(p, "restart_on_change", "always", call_.method, 16);
    if (!restart) return ctx_.server.Reply(call_, BadRequest(restart.error()));
    auto policy = ParseRestartOnChange(*restart);
    if (!policy) return ctx_.server.Reply(call_, BadRequest(policy.error()));
    restart_ = *policy;
    source_ = *source;
    dry_run_ = *dry_run;
    auto self = shared_from_this();
    ctx_.pool.Run<Loaded>(
        [text = *description, src = source_, layout = ctx_.layout] {
          // The orphans too: an added qube of an orphan's name gets a note.
          return Loaded{config::LoadSystemFromString(text, config::Format::kJson, src),
                        storage::ListOrphans(layout)};
        },
        [self](Loaded loaded) { self->Validated(std::move(loaded)); });
  }

 private:
  struct Loaded {
    config::LoadOutcome outcome;
    Result<std::vector<storage::OrphanInfo>> orphans;
  };

  void Validated(Loaded loaded) {
    config::LoadOutcome& outcome = loaded.outcome;
    if (!outcome.system) {
      std::string text;
      for (const auto& d : outcome.diagnostics) text += (text.empty() ? "" : "\n") + d.ToString();
      return ctx_.server.Reply(call_, Fail(codes::kInvalidConfig, text));
    }
    if (auto refused = RefuseHostSources(*outcome.system)) {
      return ctx_.server.Reply(call_, tl::unexpected(*refused));
    }
    ApplyProposal proposal = ProposeApply(ctx_.manager, std::move(*outcome.system), restart_);
    json result = {{"diff", DiffToJson(proposal.diff)},
                   {"applied", false},
                   {"actions", PlanToJson(proposal.plan)}};
    if (!loaded.orphans) {
      Log(LogLevel::kWarn, "apply: cannot list orphaned volumes",
          {{"error", loaded.orphans.error().ToString()}});
    }
    json notes =
        OrphanNotes(proposal.diff, loaded.orphans.value_or(std::vector<storage::OrphanInfo>{}));
    if (!notes.empty()) result["notes"] = notes;
    if (dry_run_) return ctx_.server.Reply(call_, result);
    for (const auto& note : notes) Log(LogLevel::kInfo, "apply", {{"note", note.get<std::string>()}});
    ctx_.audit.Write({{"kind", "apply"}, {"source", source_}, {"diff", result["diff"]}});
    auto self = shared_from_this();
    // After the switch: the volumes of removed qubes are kept aside as
    // orphans, so a qube added later under the same name starts empty.
    // Volumes whose private_size went up are grown.
    AfterAdopt keep_volumes = [self](const SystemDiff& diff, std::function<void(json)> done) {
      std::vector<std::string> removed;
      for (const QubeChange& c : diff.qubes) {
        if (c.kind == ChangeKind::kRemoved) removed.push_back(c.qube);
      }
      KeepRemovedVolumes(self->ctx_, std::move(removed),
                         [self, diff, done = std::move(done)](json kept) {
                           GrowChangedVolumes(self->ctx_, diff, [kept, done](json grown) mutable {
                             for (auto& e : grown) kept.push_back(std::move(e));
                             done(std::move(kept));
                           });
                         });
    };
    CarryOutApply(
        ctx_.manager, std::move(proposal), source_, ctx_.stop_grace,
        [self, result](ApiResult<ApplyOutcome> carried_out) mutable {
          if (!carried_out) {
            return self->ctx_.server.Reply(self->call_, tl::unexpected(carried_out.error()));
          }
          result["applied"] = true;
          result["done"] = std::move(carried_out->done);
          result["ok"] = carried_out->ok;
          self->ctx_.server.Reply(self->call_, result);
        },
        std::move(keep_volumes));
  }

  // A description that makes the daemon read a host path it names (dir:,
  // host) is refused unless the caller is root or in --allow-host-sources
  // (host_sources.h); also for a dry run, so the answer comes before the plan.
  std::optional<ApiError> RefuseHostSources(const config::System& next) const {
    std::vector<HostSource> fresh = NewHostSources(ctx_.manager.config().system(), next);
    if (fresh.empty()) return std::nullopt;
    const std::string& group = ctx_.host_sources_group;
    std::optional<gid_t> gid = LookupGroupId(group);
    if (MayUseHostSources(call_.peer, gid)) return std::nullopt;
    const HostSource& first = fresh.front();
    std::string what = first.qube.empty()
                           ? "the description changes policy_dir to \"" +
                                 first.source.substr(first.source.find(':') + 1) +
                                 "\", which makes tesserad read its RPC policy from a host path"
                           : "qube " + first.qube + " has template source \"" + first.source +
                                 "\", which makes tesserad read a host path as root";
    std::string message = "permission denied: " + what + "; uid " + std::to_string(call_.peer.uid) +
                          " may not ask for that";
    if (fresh.size() > 1) {
      message += " (nor for " + std::to_string(fresh.size() - 1) + " more such source" +
                 (fresh.size() > 2 ? "s" : "") + ")";
    }
    if (group.empty()) {
      message +=
          ". Only root may, unless tesserad is started with --allow-host-sources GROUP "
          "(then members of GROUP may too)";
    } else if (!gid) {
      message +=
          ". Only root may: the group of --allow-host-sources, " + group + ", does not exist";
    } else {
      message += ". Only root and members of group " + group + " (--allow-host-sources) may";
    }
    return ApiError{codes::kPermissionDenied, message};
  }

  MethodContext& ctx_;
  Call call_;
  std::string source_;
  bool dry_run_ = true;
  RestartOnChange restart_ = RestartOnChange::kAlways;
};

}  // namespace

void RegisterAdminMethods(MethodContext& ctx) {
  AdminServer& s = ctx.server;
  MethodContext* c = &ctx;
  s.Register("daemon.info", {}, [c](Call call) { Info(*c, std::move(call)); });
  s.Register("qube.list", {.audit_failures_only = true}, [c](Call call) { List(*c, std::move(call)); });
  s.Register("qube.start", {}, [c](Call call) { Start(*c, std::move(call)); });
  s.Register("qube.stop", {}, [c](Call call) { Stop(*c, std::move(call), c->stop_grace); });
  s.Register("qube.kill", {}, [c](Call call) { Stop(*c, std::move(call), std::chrono::milliseconds(0)); });
  s.Register("qube.restart", {}, [c](Call call) { Restart(*c, std::move(call)); });
  s.Register("qube.run", {.accepts_fds = true}, [c](Call call) { c->runs.Handle(std::move(call)); });
  s.Register("qube.logs", {}, [c](Call call) { Logs(*c, std::move(call)); });
  s.Register("qube.prefs", {}, [c](Call call) { Prefs(*c, std::move(call)); });
  s.Register("system.get", {}, [c](Call call) { GetSystem(*c, std::move(call)); });
  s.Register("system.apply", {}, [c](Call call) {
    std::make_shared<ApplyRun>(*c, std::move(call))->Begin();
  });
  s.Register("events.subscribe", {}, [c](Call call) { Subscribe(*c, std::move(call)); });
  RegisterVolumeMethods(ctx);
}

}  // namespace tessera::daemon

#include "daemon/volume_methods.h"

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>

#include "common/json_access.h"
#include "common/log.h"
#include "common/text.h"
#include "daemon/recovery.h"
#include "storage/private_volume.h"

namespace tessera::daemon {

using nlohmann::json;
using Call = AdminServer::Call;
namespace codes = wire::codes;

namespace {

ApiError BadRequest(const Error& e) { return ApiError{codes::kBadRequest, e.message()}; }

// A storage error as the API reports it: a refusal to replace data is the
// qube's state, a malformed name the request's fault.
ApiError FromStorage(const Error& e) {
  switch (e.errno_value()) {
    case EEXIST:
      return ApiError{codes::kInvalidState, e.ToString()};
    case EINVAL:
      return ApiError{codes::kBadRequest, e.ToString()};
    default:
      return ApiError{codes::kFailed, e.ToString()};
  }
}

json ToJson(const storage::OrphanInfo& o) {
  return {{"id", o.id},         {"qube", o.qube},   {"removed", o.removed},
          {"reason", o.reason}, {"bytes", o.bytes}, {"id_base", o.id_base}};
}
json ToJson(const std::optional<storage::OrphanInfo>& o) { return o ? ToJson(*o) : json(nullptr); }

// Runs `work` on the pool with `held` qubes held, releases them on the loop
// and replies. The qubes are held by the caller already.
void RunHeld(MethodContext& ctx, Call call, std::vector<std::string> held,
             std::function<ApiResult<json>()> work) {
  auto* c = &ctx;
  ctx.pool.Run<ApiResult<json>>(std::move(work), [c, call, held](ApiResult<json> r) {
    for (const auto& q : held) c->manager.Release(q);
    json record = {{"kind", "volume"}, {"action", call.method}, {"ok", r.has_value()}};
    if (r) {
      record["result"] = *r;
    } else {
      record["error"] = r.error().message;
    }
    c->audit.Write(std::move(record));
    c->server.Reply(call, std::move(r));
  });
}

void ListVolumes(MethodContext& ctx, Call call) {
  if (auto s = OnlyKeys(call.params, {}, call.method); !s) {
    return ctx.server.Reply(call, tl::unexpected(BadRequest(s.error())));
  }
  std::vector<std::pair<std::string, uint64_t>> qubes;  // name, private_size in bytes
  for (const config::Qube& q : ctx.manager.config().system().qubes) {
    if (q.klass == config::QubeClass::kDisposable) continue;  // no volume of its own to keep
    qubes.emplace_back(q.name, q.private_size_mib << 20);
  }
  auto* server = &ctx.server;
  ctx.pool.Run<ApiResult<json>>(
      [layout = ctx.layout, qubes]() -> ApiResult<json> {
        auto orphans = storage::ListOrphans(layout);
        if (!orphans) return tl::unexpected(FromStorage(orphans.error()));
        json out = {{"orphans", json::array()}, {"volumes", json::array()}};
        for (const auto& o : *orphans) out["orphans"].push_back(ToJson(o));
        for (const auto& [q, private_size] : qubes) {
          // An image's disk usage is what its file holds on the host; a
          // directory volume (not started since the upgrade) is walked.
          std::string image = layout.QubeDir(q) + "/private.img";
          bool imaged = storage::HasPrivateImage(layout, q);
          auto bytes = storage::DiskUsage(imaged ? image : layout.PrivateVolume(q));
          if (!bytes) return tl::unexpected(FromStorage(bytes.error()));
          auto size = storage::PrivateVolumeSize(layout, q);
          if (!size) return tl::unexpected(FromStorage(size.error()));
          out["volumes"].push_back({{"qube", q},
                                    {"bytes", *bytes},
                                    {"size", *size ? json(**size) : json(nullptr)},
                                    {"private_size", private_size},
                                    {"path", imaged ? image : layout.PrivateVolume(q)}});
        }
        return out;
      },
      [server, call](ApiResult<json> r) { server->Reply(call, std::move(r)); });
}

void Purge(MethodContext& ctx, Call call) {
  if (auto s = OnlyKeys(call.params, {"name"}, call.method); !s) {
    return ctx.server.Reply(call, tl::unexpected(BadRequest(s.error())));
  }
  auto name = RequiredString(call.params, "name", call.method, 64);
  if (!name) return ctx.server.Reply(call, tl::unexpected(BadRequest(name.error())));
  RunHeld(ctx, std::move(call), {}, [layout = ctx.layout, name = *name]() -> ApiResult<json> {
    auto purged = storage::PurgeOrphan(layout, name);
    if (!purged) return tl::unexpected(FromStorage(purged.error()));
    return json{{"purged", ToJson(*purged)}};
  });
}

// Holds `qubes` (all or none); the error of the first that cannot be held.
std::optional<ApiError> HoldAll(MethodContext& ctx, const std::vector<std::string>& qubes) {
  for (size_t i = 0; i < qubes.size(); ++i) {
    auto held = ctx.manager.Hold(qubes[i]);
    if (!held) {
      for (size_t j = 0; j < i; ++j) ctx.manager.Release(qubes[j]);
      return held.error();
    }
  }
  return std::nullopt;
}

void Adopt(MethodContext& ctx, Call call) {
  auto& p = call.params;
  if (auto s = OnlyKeys(p, {"name", "qube", "force"}, call.method); !s) {
    return ctx.server.Reply(call, tl::unexpected(BadRequest(s.error())));
  }
  auto name = RequiredString(p, "name", call.method, 64);
  if (!name) return ctx.server.Reply(call, tl::unexpected(BadRequest(name.error())));
  // The orphan's own qube unless another is named.
  std::string fallback = name->substr(0, name->find('@'));
  auto qube = StringOr(p, "qube", fallback, call.method, 64);
  auto force = BoolOr(p, "force", false, call.method);
  if (!qube) return ctx.server.Reply(call, tl::unexpected(BadRequest(qube.error())));
  if (!force) return ctx.server.Reply(call, tl::unexpected(BadRequest(force.error())));
  if (auto refused = HoldAll(ctx, {*qube})) return ctx.server.Reply(call, tl::unexpected(*refused));
  auto displace = *force ? storage::Displace::kOrphan : storage::Displace::kRefuse;
  RunHeld(ctx, std::move(call), {*qube},
          [layout = ctx.layout, name = *name, qube = *qube, displace]() -> ApiResult<json> {
            auto ids = storage::AllocateIdRange(layout, qube);
            if (!ids) return tl::unexpected(FromStorage(ids.error()));
            auto adopted = storage::AdoptOrphan(layout, name, qube, *ids, displace);
            if (!adopted) return tl::unexpected(FromStorage(adopted.error()));
            return json{{"qube", qube},
                        {"adopted", ToJson(adopted->adopted)},
                        {"displaced", ToJson(adopted->displaced)}};
          });
}

void Copy(MethodContext& ctx, Call call) {
  auto& p = call.params;
  if (auto s = OnlyKeys(p, {"source", "dest", "force"}, call.method); !s) {
    return ctx.server.Reply(call, tl::unexpected(BadRequest(s.error())));
  }
  auto source = RequiredString(p, "source", call.method, 64);
  auto dest = RequiredString(p, "dest", call.method, 64);
  auto force = BoolOr(p, "force", false, call.method);
  if (!source) return ctx.server.Reply(call, tl::unexpected(BadRequest(source.error())));
  if (!dest) return ctx.server.Reply(call, tl::unexpected(BadRequest(dest.error())));
  if (!force) return ctx.server.Reply(call, tl::unexpected(BadRequest(force.error())));
  if (*source == *dest) {
    return ctx.server.Reply(
        call, Fail(codes::kBadRequest, "volume.copy: source and destination are both " + *source));
  }
  if (auto refused = HoldAll(ctx, {*source, *dest})) {
    return ctx.server.Reply(call, tl::unexpected(*refused));
  }
  auto displace = *force ? storage::Displace::kOrphan : storage::Displace::kRefuse;
  RunHeld(ctx, std::move(call), {*source, *dest},
          [layout = ctx.layout, source = *source, dest = *dest, displace]() -> ApiResult<json> {
            auto copied = storage::CopyPrivateVolume(layout, source, dest, displace);
            if (!copied) return tl::unexpected(FromStorage(copied.error()));
            return json{{"source", source},
                        {"dest", dest},
                        {"bytes", copied->bytes},
                        {"displaced", ToJson(copied->displaced)}};
          });
}

// `tessera volume resize QUBE SIZE`: grows the volume (never shrinks). A
// halted qube is held for the offline growth; a running one grows online.
void Resize(MethodContext& ctx, Call call) {
  auto& p = call.params;
  if (auto s = OnlyKeys(p, {"qube", "size"}, call.method); !s) {
    return ctx.server.Reply(call, tl::unexpected(BadRequest(s.error())));
  }
  auto qube = RequiredString(p, "qube", call.method, 64);
  if (!qube) return ctx.server.Reply(call, tl::unexpected(BadRequest(qube.error())));
  std::optional<uint64_t> mib;
  if (p.contains("size") && p["size"].is_string()) {
    mib = ParseSizeMib(p["size"].get<std::string>());
  } else if (p.contains("size") && p["size"].is_number_unsigned()) {
    mib = p["size"].get<uint64_t>();
  }
  if (!mib || *mib > (uint64_t{16} << 20)) {
    return ctx.server.Reply(
        call, Fail(codes::kBadRequest,
                   "volume.resize: size must be like \"4G\", \"512M\" or a number of MiB, "
                   "at most 16 TiB"));
  }
  const config::Qube* q = ctx.manager.config().system().Find(*qube);
  if (q == nullptr) return ctx.server.Reply(call, tl::unexpected(ctx.manager.NoSuchQube(*qube)));
  std::vector<std::string> held;
  if (auto h = ctx.manager.Hold(*qube); h) {
    held.push_back(*qube);
  } else if (h.error().code != codes::kInvalidState) {
    return ctx.server.Reply(call, tl::unexpected(h.error()));
  }
  uint64_t private_size = q->private_size_mib << 20;
  RunHeld(
      ctx, std::move(call), held,
      [layout = ctx.layout, qube = *qube, bytes = *mib << 20, private_size]() -> ApiResult<json> {
        auto resized = storage::ResizePrivateVolume(layout, qube, bytes);
        if (!resized) return tl::unexpected(FromStorage(resized.error()));
        return json{{"qube", qube},
                    {"size", resized->size},
                    {"pending", resized->pending},
                    {"private_size", private_size}};
      });
}

}  // namespace

std::vector<std::string> OrphanNotes(const SystemDiff& diff,
                                     const std::vector<storage::OrphanInfo>& orphans) {
  std::vector<std::string> notes;
  for (const QubeChange& c : diff.qubes) {
    if (c.kind != ChangeKind::kAdded) continue;
    std::vector<std::string> ids;
    for (const auto& o : orphans) {
      if (o.qube == c.qube) ids.push_back(o.id);
    }
    if (ids.empty()) continue;
    std::string list;
    for (const auto& id : ids) list += (list.empty() ? "" : ", ") + id;
    notes.push_back("qube " + c.qube +
                    " gets a new, empty private volume; an orphaned volume of "
                    "that name exists (" +
                    list + "): `tessera volume adopt " + ids.back() + "` takes it back while " +
                    c.qube + " is halted");
  }
  return notes;
}

void KeepRemovedVolumes(MethodContext& ctx, std::vector<std::string> removed,
                        std::function<void(json entries)> done) {
  std::vector<std::string> gone;
  for (auto& q : removed) {
    // Still known (it could not be stopped): its volume is in use. It is
    // orphaned when the daemon next starts without it.
    if (!ctx.manager.Exists(q) && !IsDisposableName(q)) gone.push_back(std::move(q));
  }
  if (gone.empty()) return done(json::array());
  auto* c = &ctx;
  ctx.pool.Run<json>(
      [layout = ctx.layout, gone, source = ctx.manager.config().source()] {
        json entries = json::array();
        for (const auto& q : gone) {
          auto orphan = storage::OrphanQubeStorage(
              layout, q, "removed from the system description (" + source + ")");
          if (orphan && !*orphan) continue;  // it never had storage
          json e = {{"action", "orphan"}, {"qube", q}, {"ok", orphan.has_value()}};
          if (orphan) {
            e["orphan"] = (*orphan)->id;
            e["note"] = "volume of " + q + " kept as orphan " + (*orphan)->id +
                        " (`tessera volume purge " + (*orphan)->id + "` deletes it)";
          } else {
            e["error"] = orphan.error().ToString();
          }
          entries.push_back(std::move(e));
        }
        return entries;
      },
      [c, done](json entries) {
        for (const auto& e : entries) {
          c->audit.Write({{"kind", "volume"},
                          {"action", "orphan"},
                          {"qube", e["qube"]},
                          {"ok", e["ok"]},
                          {"orphan", e.value("orphan", "")},
                          {"error", e.value("error", "")}});
        }
        done(std::move(entries));
      });
}

void GrowChangedVolumes(MethodContext& ctx, const SystemDiff& diff,
                        std::function<void(json entries)> done) {
  std::vector<std::pair<std::string, uint64_t>> grow;  // qube, new private_size in bytes
  for (const QubeChange& c : diff.qubes) {
    if (c.kind != ChangeKind::kChanged) continue;
    bool changed = std::any_of(c.fields.begin(), c.fields.end(),
                               [](const FieldChange& f) { return f.field == "private_size"; });
    const config::Qube* q = ctx.manager.config().system().Find(c.qube);
    if (changed && q != nullptr) grow.emplace_back(c.qube, q->private_size_mib << 20);
  }
  if (grow.empty()) return done(json::array());
  auto* c = &ctx;
  ctx.pool.Run<json>(
      [layout = ctx.layout, grow] {
        json entries = json::array();
        for (const auto& [qube, bytes] : grow) {
          json e = {{"action", "grow volume"}, {"qube", qube}, {"ok", true}};
          auto size = storage::PrivateVolumeSize(layout, qube);
          if (!size) {
            e["ok"] = false;
            e["error"] = size.error().ToString();
          } else if (!*size) {
            e["note"] =
                "volume of " + qube + " is made at " + FormatBytes(bytes) + " at its next start";
          } else if (**size >= bytes) {
            e["note"] = "volume of " + qube + " stays " + FormatBytes(**size) +
                        (**size > bytes ? " (volumes never shrink)" : "");
          } else if (auto resized = storage::ResizePrivateVolume(layout, qube, bytes); !resized) {
            e["ok"] = false;
            e["error"] = resized.error().ToString();
          } else {
            e["note"] = "volume of " + qube + " grown from " + FormatBytes(**size) + " to " +
                        FormatBytes(resized->size) +
                        (resized->pending ? " (the running qube sees it after a restart)" : "");
          }
          entries.push_back(std::move(e));
        }
        return entries;
      },
      [c, done](json entries) {
        for (const auto& e : entries) {
          c->audit.Write({{"kind", "volume"},
                          {"action", "grow"},
                          {"qube", e["qube"]},
                          {"ok", e["ok"]},
                          {"error", e.value("error", "")}});
        }
        done(std::move(entries));
      });
}

void RegisterVolumeMethods(MethodContext& ctx) {
  AdminServer& s = ctx.server;
  MethodContext* c = &ctx;
  s.Register("volume.list", {}, [c](Call call) { ListVolumes(*c, std::move(call)); });
  s.Register("volume.purge", {}, [c](Call call) { Purge(*c, std::move(call)); });
  s.Register("volume.adopt", {}, [c](Call call) { Adopt(*c, std::move(call)); });
  s.Register("volume.copy", {}, [c](Call call) { Copy(*c, std::move(call)); });
  s.Register("volume.resize", {}, [c](Call call) { Resize(*c, std::move(call)); });
}

}  // namespace tessera::daemon

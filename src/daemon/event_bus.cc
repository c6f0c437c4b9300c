#include "daemon/event_bus.h"

#include <vector>

#include "common/json_access.h"
#include "daemon/audit.h"

namespace tessera::daemon {

uint64_t EventBus::Subscribe(Sink sink) {
  uint64_t id = next_id_++;
  sinks_.emplace(id, std::move(sink));
  return id;
}

void EventBus::Unsubscribe(uint64_t id) { sinks_.erase(id); }

void EventBus::Emit(nlohmann::json event) {
  if (!event.contains("ts")) event["ts"] = NowRfc3339();
  std::string text = DumpJson(event);
  // A sink may unsubscribe others (or itself) while it runs: walk ids.
  std::vector<uint64_t> ids;
  for (const auto& [id, sink] : sinks_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = sinks_.find(id);
    if (it == sinks_.end()) continue;
    Sink sink = it->second;
    if (!sink(text)) sinks_.erase(id);
  }
}

}  // namespace tessera::daemon

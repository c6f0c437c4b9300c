#include "policy/system.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "policy/token.h"

namespace tessera::policy {

bool QubeInfo::HasTag(std::string_view tag) const {
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

void SystemInfo::Add(QubeInfo qube) {
  auto it = by_name_.find(std::string_view(qube.name));
  if (it != by_name_.end()) {
    qubes_[it->second] = std::move(qube);
    Reindex();
    return;
  }
  const auto index = static_cast<uint32_t>(qubes_.size());
  by_name_.emplace(qube.name, index);
  if (!qube.uuid.empty()) by_uuid_.emplace(qube.uuid, index);
  auto pos = std::lower_bound(name_order_.begin(), name_order_.end(), qube.name,
                              [&](uint32_t i, const std::string& name) { return qubes_[i].name < name; });
  name_order_.insert(pos, index);
  qubes_.push_back(std::move(qube));
}

void SystemInfo::Reindex() {
  by_name_.clear();
  by_uuid_.clear();
  for (uint32_t i = 0; i < qubes_.size(); ++i) {
    by_name_.emplace(qubes_[i].name, i);
    if (!qubes_[i].uuid.empty()) by_uuid_.emplace(qubes_[i].uuid, i);
  }
}

const QubeInfo* SystemInfo::Find(std::string_view key) const {
  const Index* index = &by_name_;
  if (key.starts_with("uuid:")) {
    key.remove_prefix(5);
    index = &by_uuid_;
  }
  auto it = index->find(key);
  return it == index->end() ? nullptr : &qubes_[it->second];
}

QubeInfo Dom0Info() {
  QubeInfo dom0;
  dom0.name = "dom0";
  dom0.type = "AdminVM";
  dom0.uuid = std::string(kDom0Uuid);
  dom0.running = true;
  return dom0;
}

namespace {

Status ReadQube(const std::string& name, const nlohmann::json& j, QubeInfo& q) {
  auto where = [&](std::string_view field) {
    return "qube '" + name + "': field '" + std::string(field) + "'";
  };
  if (!j.is_object()) return Err("qube '" + name + "': expected an object");
  q.name = name;
  for (const auto& [key, value] : j.items()) {
    if (key == "type") {
      if (!value.is_string()) return Err(where(key) + " must be a string");
      q.type = value.get<std::string>();
      static constexpr std::string_view kTypes[] = {"AdminVM",      "AppVM",  "TemplateVM",
                                                    "StandaloneVM", "DispVM", "RemoteVM"};
      if (std::find(std::begin(kTypes), std::end(kTypes), q.type) == std::end(kTypes)) {
        return Err(where(key) + ": unknown type '" + q.type + "'");
      }
    } else if (key == "tags") {
      if (!value.is_array()) return Err(where(key) + " must be a list of strings");
      for (const auto& t : value) {
        if (!t.is_string()) return Err(where(key) + " must be a list of strings");
        q.tags.push_back(t.get<std::string>());
      }
    } else if (key == "uuid") {
      if (!value.is_string()) return Err(where(key) + " must be a string");
      q.uuid = value.get<std::string>();
      if (q.uuid.starts_with("uuid:")) q.uuid.erase(0, 5);
    } else if (key == "template_for_dispvms" || key == "internal") {
      if (!value.is_boolean()) return Err(where(key) + " must be true or false");
      (key == "internal" ? q.internal : q.template_for_dispvms) = value.get<bool>();
    } else if (key == "default_dispvm") {
      if (value.is_null()) {
        q.default_dispvm.reset();
      } else if (value.is_string()) {
        q.default_dispvm = value.get<std::string>();
      } else {
        return Err(where(key) + " must be a qube name or null");
      }
    } else if (key == "power_state") {
      if (!value.is_string()) return Err(where(key) + " must be \"Running\" or \"Halted\"");
      const auto s = value.get<std::string>();
      if (s == "Running") {
        q.running = true;
      } else if (s == "Halted" || s == "Paused" || s == "Suspended" || s == "Transient" ||
                 s == "Dying" || s == "Crashed" || s == "NA") {
        q.running = false;
      } else {
        return Err(where(key) + ": unknown power state '" + s + "'");
      }
    } else if (key == "relayvm" || key == "transport_rpc") {
      if (!value.is_string() && !value.is_null()) return Err(where(key) + " must be a string");
      if (value.is_string()) (key == "relayvm" ? q.relayvm : q.transport_rpc) = value.get<std::string>();
    } else if (key == "name") {
      if (!value.is_string() || value.get<std::string>() != name) {
        return Err(where(key) + " does not match the key it is listed under");
      }
    }
    // Other fields (label, description, ...) are allowed and ignored, so a
    // Qubes `internal.GetSystemInfo` dump can be used as is.
  }
  return Ok();
}

}  // namespace

Result<SystemInfo> SystemInfo::FromJson(const nlohmann::json& doc) {
  if (!doc.is_object()) return Err("system description: expected a JSON object");
  const nlohmann::json* qubes = nullptr;
  if (auto it = doc.find("qubes"); it != doc.end()) qubes = &*it;
  if (auto it = doc.find("domains"); it != doc.end() && qubes == nullptr) qubes = &*it;
  if (qubes == nullptr || !qubes->is_object()) {
    return Err("system description: expected an object \"qubes\": {NAME: {...}}");
  }
  SystemInfo system;
  bool have_admin = false;
  for (const auto& [name, value] : qubes->items()) {
    if (name.empty() || name.starts_with("uuid:") || name.starts_with("@")) {
      return Err("system description: invalid qube name '" + name + "'");
    }
    QubeInfo q;
    TRY_CTX(ReadQube(name, value, q), "system description");
    have_admin = have_admin || q.type == "AdminVM";
    system.Add(std::move(q));
  }
  if (!have_admin && system.Find("dom0") == nullptr) system.Add(Dom0Info());
  return system;
}

Result<SystemInfo> SystemInfo::FromJsonText(std::string_view text) {
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Err("system description: invalid JSON");
  return FromJson(doc);
}

}  // namespace tessera::policy

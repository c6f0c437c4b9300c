#pragma once
// A configured qube's properties as `qube.prefs` shows them.

#include <nlohmann/json.hpp>

#include "config/model.h"

namespace tessera::daemon {

nlohmann::json QubePrefs(const config::Qube& qube);

}  // namespace tessera::daemon

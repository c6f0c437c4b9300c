#pragma once
// How daemon components report the outcome of an admin-visible operation: a
// stable error code (wire/admin_protocol.h codes::) and a message for people,
// delivered to a callback on the loop thread once the (asynchronous) work is
// done.
//
//   void Start(const std::string& qube, Done<nlohmann::json> done);
//   manager.Start("work", [](ApiResult<json> r) { if (!r) Reply(r.error()); });

#include <functional>
#include <string>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "wire/admin_protocol.h"

namespace tessera::daemon {

struct ApiError {
  std::string code = wire::codes::kFailed;
  std::string message;
};

template <class T>
using ApiResult = tl::expected<T, ApiError>;

template <class T>
using Done = std::function<void(ApiResult<T>)>;

inline tl::unexpected<ApiError> Fail(std::string code, std::string message) {
  return tl::unexpected<ApiError>(ApiError{std::move(code), std::move(message)});
}

}  // namespace tessera::daemon

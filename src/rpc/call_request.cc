#include "rpc/call_request.h"

#include <cerrno>

#include "policy/rule.h"
#include "policy/token.h"

namespace tessera::rpc {

Result<policy::Request> ValidateCall(std::string_view target, std::string_view service_and_argument,
                                     std::string source) {
  auto refuse = [](std::string message) { return Err(Error(std::move(message), EINVAL)); };
  policy::Request request;
  policy::SplitServiceArgument(service_and_argument, request);
  if (request.service.empty()) return refuse("empty service name");
  if (request.service.size() > kMaxServiceName) {
    return refuse("service name longer than " + std::to_string(kMaxServiceName) + " bytes");
  }
  if (request.argument.size() > kMaxServiceArgument + 1) {
    return refuse("service argument longer than " + std::to_string(kMaxServiceArgument) + " bytes");
  }
  std::optional<std::string> service;
  std::optional<std::string> argument;
  // Neither '*' nor any other character outside the name alphabet: a call
  // names one service.
  if (auto ok =
          policy::ValidateServiceArgument(request.service, request.argument, service, argument);
      !ok || !service || !argument) {
    return refuse(ok ? "wildcard in a call's service" : ok.error());
  }
  if (request.argument == "+." || request.argument == "+..") {
    return refuse("service argument '" + request.argument.substr(1) + "' is not allowed");
  }
  if (target.size() > kMaxTarget) {
    return refuse("target longer than " + std::to_string(kMaxTarget) + " bytes");
  }
  if (!target.empty()) {
    for (char c : target) {
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
        return refuse("control character or space in the target");
      }
    }
    if (auto cls = policy::ClassifyToken(target, policy::TokenContext::kIntendedTarget); !cls) {
      return refuse("target '" + std::string(target) + "': " + cls.error());
    }
  }
  request.target = std::string(target);
  request.source = std::move(source);
  return request;
}

}  // namespace tessera::rpc

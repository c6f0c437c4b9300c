#pragma once
// Error and Result: how every tessera module reports failure.
//
//   Result<UniqueFd> OpenConfig(const std::string& path) {
//     int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
//     if (fd < 0) return Err(Error::FromErrno("open " + path));
//     return UniqueFd(fd);
//   }
//   Status Load() {
//     UniqueFd fd = TRY(OpenConfig("/etc/tessera/system.toml"));
//     ...
//   }
//
// Exceptions never cross a module boundary; Result does.

#include <cerrno>
#include <memory>
#include <type_traits>
#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace tessera {

class Error {
 public:
  explicit Error(std::string message, int errno_value = 0)
      : message_(std::move(message)), errno_value_(errno_value) {}

  // An error from a failed system call: keeps errno so callers can branch on it.
  static Error FromErrno(std::string context, int errno_value = errno) {
    return Error(std::move(context), errno_value);
  }

  // Wraps this error as the cause of a new one with more context.
  Error Wrap(std::string context) && {
    Error outer(std::move(context), errno_value_);
    outer.cause_ = std::make_shared<Error>(std::move(*this));
    return outer;
  }

  const std::string& message() const { return message_; }
  // The errno of this error or, failing that, of its innermost cause (0 if none).
  int errno_value() const { return errno_value_; }
  const Error* cause() const { return cause_.get(); }

  // "outer: inner: strerror(errno)".
  std::string ToString() const;

 private:
  std::string message_;
  int errno_value_ = 0;
  std::shared_ptr<const Error> cause_;
};

template <class T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

inline tl::unexpected<Error> Err(Error e) { return tl::unexpected<Error>(std::move(e)); }
inline tl::unexpected<Error> Err(std::string message) {
  return tl::unexpected<Error>(Error(std::move(message)));
}
inline Status Ok() { return {}; }

namespace detail {
// Moves the value out of a Result for TRY; a Status yields void.
template <class R>
decltype(auto) TakeValue(R&& result) {
  using T = typename std::remove_cvref_t<R>::value_type;
  if constexpr (std::is_void_v<T>) {
    return;
  } else {
    return T(std::move(*result));
  }
}
}  // namespace detail

}  // namespace tessera

// Evaluates a Result expression; on error returns it from the enclosing function,
// otherwise yields the value (SerenityOS style). Uses a GNU statement expression,
// which g++ and clang both support.
#define TRY(expr)                                                   \
  ({                                                                \
    auto&& tessera_try_result_ = (expr);                            \
    if (!tessera_try_result_) [[unlikely]]                          \
      return ::tl::unexpected<::tessera::Error>(                    \
          std::move(tessera_try_result_).error());                  \
    ::tessera::detail::TakeValue(tessera_try_result_);              \
  })

// Like TRY but adds context to the error on the way out.
#define TRY_CTX(expr, context)                                      \
  ({                                                                \
    auto&& tessera_try_result_ = (expr);                            \
    if (!tessera_try_result_) [[unlikely]]                          \
      return ::tl::unexpected<::tessera::Error>(                    \
          std::move(tessera_try_result_).error().Wrap(context));    \
    ::tessera::detail::TakeValue(tessera_try_result_);              \
  })

// Owning wrappers for a file descriptor and a memory mapping: the only
// places that close() or munmap().
#pragma once

#include <cstddef>
#include <utility>

namespace vfiolab {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

class MemoryMapping {
 public:
  MemoryMapping() = default;
  MemoryMapping(void* address, std::size_t length) : address_(address), length_(length) {}
  MemoryMapping(MemoryMapping&& other) noexcept
      : address_(std::exchange(other.address_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  MemoryMapping& operator=(MemoryMapping&& other) noexcept;
  MemoryMapping(const MemoryMapping&) = delete;
  MemoryMapping& operator=(const MemoryMapping&) = delete;
  ~MemoryMapping();

  void* get() const { return address_; }
  std::byte* bytes() const { return static_cast<std::byte*>(address_); }
  std::size_t size() const { return length_; }
  explicit operator bool() const { return address_ != nullptr; }
  void reset();

 private:
  void* address_ = nullptr;
  std::size_t length_ = 0;
};

}  // namespace vfiolab

#include "vfiolab/unique_fd.h"

#include <sys/mman.h>
#include <unistd.h>

namespace vfiolab {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(std::exchange(other.fd_, -1));
  return *this;
}

UniqueFd::~UniqueFd() { reset(); }

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

MemoryMapping& MemoryMapping::operator=(MemoryMapping&& other) noexcept {
  if (this != &other) {
    reset();
    address_ = std::exchange(other.address_, nullptr);
    length_ = std::exchange(other.length_, 0);
  }
  return *this;
}

MemoryMapping::~MemoryMapping() { reset(); }

void MemoryMapping::reset() {
  if (address_ != nullptr) ::munmap(address_, length_);
  address_ = nullptr;
  length_ = 0;
}

}  // namespace vfiolab

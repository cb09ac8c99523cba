// Device registers through a mapped BAR: volatile loads and stores of
// exactly the width asked for, as a device's register interface expects.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace vfiolab {

class Mmio {
 public:
  Mmio() = default;
  explicit Mmio(void* base) : base_(static_cast<volatile std::byte*>(base)) {}
  explicit operator bool() const { return base_ != nullptr; }
  volatile std::byte* at(std::size_t offset) const { return base_ + offset; }

  template <typename T>
  T read(std::size_t offset) const {
    static_assert(std::is_integral_v<T> && (sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8));
    return *reinterpret_cast<const volatile T*>(base_ + offset);
  }
  template <typename T>
  void write(std::size_t offset, T value) const {
    static_assert(std::is_integral_v<T> && (sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8));
    *reinterpret_cast<volatile T*>(base_ + offset) = value;
  }
  std::uint32_t read32(std::size_t offset) const { return read<std::uint32_t>(offset); }
  std::uint64_t read64(std::size_t offset) const { return read<std::uint64_t>(offset); }
  void write32(std::size_t offset, std::uint32_t value) const { write(offset, value); }
  void write64(std::size_t offset, std::uint64_t value) const { write(offset, value); }

 private:
  volatile std::byte* base_ = nullptr;
};

}  // namespace vfiolab

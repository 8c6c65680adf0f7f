// emu_launch.h: the trampoline that turns a cuLaunchKernel-style `void**` argument array into a call of
// a kernel's C++ signature. build.rs emits one ORTHO_EMU_REGISTER per entry point after the family's
// source; the kernel's parameter types come from decltype(&kernel), so Rust and C++ can only disagree
// in ways the size check catches (or that have the same size, e.g. int vs float).
#pragma once

#include "cuda_emu.h"

namespace emu {

template <class F>
struct KernelSig;

template <class... A>
struct KernelSig<void (*)(A...)> {
    static_assert((std::is_trivially_copyable<A>::value && ...), "kernel parameters must be trivially copyable");
    using Args = std::tuple<A...>;
    static constexpr uint32_t kCount = sizeof...(A);
    // A trailing 0 keeps the arrays non-empty for kernels without parameters.
    static constexpr uint32_t kSizes[] = {uint32_t(sizeof(A))..., 0u};
    static constexpr uint8_t kIsPtr[] = {uint8_t(std::is_pointer<A>::value ? 1 : 0)..., 0u};

    // One thread of the grid: its cp.async queue starts empty and is drained when it exits.
    template <void (*F)(A...)>
    static void body(const void* args) {
        async_copy::thread_begin();
        std::apply(F, *static_cast<const Args*>(args));
        async_copy::thread_end();
    }

    template <size_t... I>
    static void unpack(Args& args, void* const* params, std::index_sequence<I...>) {
        (std::memcpy(&std::get<I>(args), params[I], sizeof(std::get<I>(args))), ...);
    }

    template <void (*F)(A...)>
    static int launch(const KernelInfo* self, const LaunchRequest* req, char* err, size_t cap) {
        if (req->nparams != kCount) {
            snprintf(err, cap, "kernel %s takes %u arguments, got %zu", self->name, kCount, req->nparams);
            return 1;
        }
        for (uint32_t i = 0; i < kCount; ++i) {
            if (req->sizes[i] != kSizes[i]) {
                snprintf(err, cap, "kernel %s argument %u: the kernel's parameter type has %u bytes, %zu were given",
                         self->name, i, kSizes[i], req->sizes[i]);
                return 1;
            }
            if (req->params[i] == nullptr) {
                snprintf(err, cap, "kernel %s argument %u: null parameter pointer", self->name, i);
                return 1;
            }
        }
        Args args{};
        unpack(args, req->params, std::index_sequence_for<A...>{});
        return run_grid(self, req, &body<F>, &args, err, cap);
    }

    template <void (*F)(A...)>
    static constexpr KernelInfo info(const char* family, const char* name) {
        return KernelInfo{family, name, kCount, 0, kSizes, kIsPtr, &launch<F>};
    }
};

}  // namespace emu

// Defines the registry record `ortho_emu_info_<KERNEL>` for NS::KERNEL (constant-initialized).
#define ORTHO_EMU_REGISTER(FAMILY, NS, KERNEL)                                                         \
    extern "C" const ::emu::KernelInfo ortho_emu_info_##KERNEL =                                       \
        ::emu::KernelSig<decltype(&NS::KERNEL)>::info<&NS::KERNEL>(FAMILY, #KERNEL);

"""Bare-metal firmware of a generated project: core flags, linker scripts with the
device's memories, cross-compilation, QEMU runs and the real section sizes.

Every project carries ``firmware.mk`` (the core's ``-mcpu``/``-mfpu`` flags, the
QEMU machine) and two linker scripts with the same region sizes:

``firmware.ld``
    the device's memory map (Flash at ``0x08000000``; SRAM, DTCM, AXI SRAM at
    their STM32 addresses), lengths from the :class:`~.device.DeviceProfile`
    (``flash_kb``, ``sram_kb``), so ``make arm`` fails at link time when the
    weights, code, arena or the minimum stack do not fit.
``qemu.ld``
    the same regions at the MPS2 board's addresses (SSRAM1 at 0, SSRAM2/3 at
    ``0x20000000``) for ``make qemu`` (``mps2-an386``: Cortex-M4,
    ``mps2-an500``: Cortex-M7).

The arena is the input section ``.bss.te_arena`` (placed in the ``ARENA``
region: ``REGION_ALIAS`` in the scripts, the AXI SRAM on an H743), the weights
``.rodata.te_weights``.

Instruction counts: the harness reads SysTick (core clock) around each
inference. QEMU with ``-icount shift=0`` runs one instruction per virtual
nanosecond and clocks the MPS2's SysTick at 25 MHz, so one tick is
:data:`QEMU_INSNS_PER_TICK` = 40 instructions.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

__all__ = [
    "CORES",
    "MEMORY_MAPS",
    "QEMU_INSNS_PER_TICK",
    "STACK_MIN_BYTES",
    "FirmwareTarget",
    "firmware_target",
    "linker_script",
    "firmware_files",
    "check_toolchain",
    "build_firmware",
    "section_sizes",
    "run_qemu",
    "parse_harness",
]

#: instructions per SysTick tick under ``qemu-system-arm -icount shift=0`` on MPS2 (25 MHz)
QEMU_INSNS_PER_TICK = 40
#: stack the linker scripts reserve at least (``TE_STACK_MIN``); the measured
#: stack of a generated model is well below (see ``stack_bytes`` in deploy)
STACK_MIN_BYTES = 1024

#: per core: gcc flags and the QEMU machine with that core
CORES: Dict[str, Dict[str, str]] = {
    "cortex-m4": {"cpu": "-mcpu=cortex-m4 -mfloat-abi=hard -mfpu=fpv4-sp-d16", "qemu": "mps2-an386"},
    "cortex-m7": {"cpu": "-mcpu=cortex-m7 -mfloat-abi=hard -mfpu=fpv5-sp-d16", "qemu": "mps2-an500"},
    # the H743's M7 has the double-precision FPU
    "cortex-m7-dp": {"cpu": "-mcpu=cortex-m7 -mfloat-abi=hard -mfpu=fpv5-d16", "qemu": "mps2-an500"},
}

#: per device: (region, origin, kind) in order; kind "flash", "ram" (stack,
#: .data, .bss), "arena" (the arena's region when it is not the RAM) or an
#: extra region; the lengths come from the profile (flash_kb; sram_kb is the
#: region the arena goes to). Unknown devices get the generic STM32 map.
MEMORY_MAPS: Dict[str, Dict[str, Any]] = {
    # STM32F412: 1 MB Flash, 256 KB SRAM
    "stm32f412": {"core": "cortex-m4", "regions": [("FLASH", 0x08000000, "flash"), ("RAM", 0x20000000, "ram")]},
    # STM32F746: DTCM (64 KB) + SRAM1 + SRAM2 are contiguous from 0x20000000 (320 KB):
    # the arena goes first in RAM, so an arena under 64 KB sits in DTCM
    "stm32f746": {"core": "cortex-m7", "regions": [("FLASH", 0x08000000, "flash"), ("RAM", 0x20000000, "ram")]},
    # STM32H743: stack and variables in the 128 KB DTCM, the arena in the 512 KB AXI SRAM
    "stm32h743": {
        "core": "cortex-m7-dp",
        "regions": [("FLASH", 0x08000000, "flash"), ("DTCM", 0x20000000, "ram", 128), ("AXISRAM", 0x24000000, "arena")],
    },
    # STM32L432-class 64 KB part: SRAM1 (48 KB) and SRAM2 (16 KB) are contiguous at 0x20000000
    "mcu64k": {"core": "cortex-m4", "regions": [("FLASH", 0x08000000, "flash"), ("RAM", 0x20000000, "ram")]},
}
_GENERIC = {"core": "cortex-m4", "regions": [("FLASH", 0x08000000, "flash"), ("RAM", 0x20000000, "ram")]}
#: QEMU MPS2: code in SSRAM1 (4 MB at 0), data in SSRAM2/3 (4 MB at 0x20000000)
_QEMU_FLASH, _QEMU_RAM, _QEMU_BYTES = 0x00000000, 0x20000000, 4 * 1024 * 1024


@dataclass(frozen=True)
class FirmwareTarget:
    """What the firmware of one profile is built for."""

    device: str
    core: str
    cpu_flags: str
    qemu_machine: str
    #: (name, origin, length in bytes, kind)
    regions: Tuple[Tuple[str, int, int, str], ...]


def firmware_target(profile: Any) -> FirmwareTarget:
    """The :class:`FirmwareTarget` of a :class:`~.device.DeviceProfile`."""
    spec = MEMORY_MAPS.get(profile.device, _GENERIC)
    core = spec["core"]
    if profile.core and not core.startswith(profile.core):
        core = profile.core
    if core not in CORES:
        raise ValueError(f"device {profile.device!r}: no firmware target for core {core!r} (known: {sorted(CORES)})")
    regions = []
    for entry in spec["regions"]:
        name, origin, kind = entry[:3]
        if kind == "flash":
            length = int(profile.flash_kb * 1024)
        elif len(entry) > 3:
            length = int(entry[3]) * 1024
        else:
            length = int(profile.sram_kb * 1024)
        regions.append((name, origin, length, kind))
    return FirmwareTarget(profile.device, core, CORES[core]["cpu"], CORES[core]["qemu"], tuple(regions))


def linker_script(target: FirmwareTarget, qemu: bool = False) -> str:
    """The GNU ld script of ``target`` (device addresses, or QEMU's MPS2 with the same lengths)."""
    regions = []
    next_ram = _QEMU_RAM
    for name, origin, length, kind in target.regions:
        if qemu:
            if kind == "flash":
                origin = _QEMU_FLASH
            else:
                origin, next_ram = next_ram, next_ram + length
        regions.append((name, origin, length, kind))
    if qemu:
        flash = sum(r[2] for r in regions if r[3] == "flash")
        ram = sum(r[2] for r in regions if r[3] != "flash")
        if flash > _QEMU_BYTES or ram > _QEMU_BYTES:
            raise ValueError(f"device {target.device}: {flash} B Flash / {ram} B RAM exceed QEMU MPS2's 4 MB code and data memories")
    flash_name = next(r[0] for r in regions if r[3] == "flash")
    ram_name = next(r[0] for r in regions if r[3] == "ram")
    arena_name = next((r[0] for r in regions if r[3] == "arena"), ram_name)
    mem = "\n".join(f"  {n:<8} ({'rx' if k == 'flash' else 'rwx'}) : ORIGIN = 0x{o:08X}, LENGTH = {ln}" for n, o, ln, k in regions)
    where = "QEMU MPS2 addresses, the device's region sizes" if qemu else "the device's memory map"
    return f"""/* Generated by hwaml-tinyengine for {target.device} ({target.core}): {where}.
 * The link fails when code + weights exceed {flash_name}, or the arena, variables
 * and TE_STACK_MIN bytes of stack exceed their RAM. */
ENTRY(Reset_Handler)
MEMORY
{{
{mem}
}}
/* the region of the arena (input section .bss.te_arena): map it elsewhere here */
REGION_ALIAS("ARENA", {arena_name});
TE_STACK_MIN = {STACK_MIN_BYTES};

SECTIONS
{{
  .isr_vector : {{ . = ALIGN(4); KEEP(*(.isr_vector)) }} > {flash_name}
  .text : {{ *(.text*) }} > {flash_name}
  .rodata : {{ . = ALIGN(4); *(.rodata.te_weights*) *(.rodata*) . = ALIGN(4); }} > {flash_name}
  .ARM.exidx : {{ *(.ARM.exidx*) }} > {flash_name}
  .te_arena (NOLOAD) : {{ . = ALIGN(8); *(.bss.te_arena*) }} > ARENA
  .data : {{ . = ALIGN(4); _sdata = .; *(.data*) . = ALIGN(4); _edata = .; }} > {ram_name} AT > {flash_name}
  _sidata = LOADADDR(.data);
  .bss (NOLOAD) : {{ . = ALIGN(4); _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; }} > {ram_name}
  .stack (NOLOAD) : {{ . = ALIGN(8); _sstack = .; }} > {ram_name}
  _estack = ORIGIN({ram_name}) + LENGTH({ram_name});
  ASSERT(_estack - _sstack >= TE_STACK_MIN, "hwaml-tinyengine: the model does not fit: fewer than TE_STACK_MIN bytes of RAM left for the stack")
  /DISCARD/ : {{ *(.comment) *(.ARM.attributes) }}
}}
"""


def firmware_files(target: FirmwareTarget, model_src: str) -> Dict[str, str]:
    """``firmware.mk``, ``firmware.ld`` and ``qemu.ld`` of a project."""
    mk = (
        f"# Generated by hwaml-tinyengine: firmware target {target.device} ({target.core})\n"
        f"ARM_CPU = {target.cpu_flags}\nQEMU_MACHINE = {target.qemu_machine}\nMODEL_SRC = {model_src}\n"
    )
    return {"firmware.mk": mk, "firmware.ld": linker_script(target), "qemu.ld": linker_script(target, qemu=True)}


TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm", "make")


def check_toolchain(tools: Tuple[str, ...] = TOOLS) -> None:
    """Raise naming every missing tool (Debian: gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm, make)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise RuntimeError(
            f"firmware build needs {', '.join(missing)} on PATH (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi "
            f"qemu-system-arm make; scripts/setup.sh installs them), or set firmware=false on the backend"
        )


def build_firmware(path: Any, target: str = "arm", extra: Optional[List[str]] = None) -> str:
    """``make <target>`` in a project (``arm``: firmware.elf, ``firmware_qemu.elf``,
    ``firmware_profile.elf``); raises with the compiler/linker output on failure
    (a model that does not fit fails here, at the link)."""
    check_toolchain(("arm-none-eabi-gcc", "make"))
    res = subprocess.run(["make", "-s", "-C", str(Path(path).resolve()), target, *(extra or [])], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"firmware build ({target}) in {path} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout + res.stderr


def section_sizes(elf: Any) -> Dict[str, int]:
    """Bytes per section of a linked ELF (``arm-none-eabi-size -A``)."""
    check_toolchain(("arm-none-eabi-size",))
    res = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True)
    sizes: Dict[str, int] = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


_VEC = re.compile(r"^vector (\d+) (ok|MISMATCH) systick (\d+) stack (\d+)$")
_LAYER = re.compile(r"^layer (\d+) systick (\d+)$")
_MATCHED = re.compile(r"^matched (\d+)/(\d+)$")


def parse_harness(text: str) -> Dict[str, Any]:
    """The firmware harness's output: per-vector match, ticks and stack, per-layer ticks, matched/total."""
    vectors, layers, matched, total = [], {}, None, None
    for line in text.splitlines():
        line = line.strip()
        m = _VEC.match(line)
        if m:
            vectors.append({"ok": m.group(2) == "ok", "ticks": int(m.group(3)), "stack": int(m.group(4))})
            continue
        m = _LAYER.match(line)
        if m:
            layers[int(m.group(1))] = int(m.group(2))
            continue
        m = _MATCHED.match(line)
        if m:
            matched, total = int(m.group(1)), int(m.group(2))
    if matched is None or not vectors:
        raise RuntimeError(f"the firmware harness printed no result (crash or fault?); output:\n{text[-2000:]}")
    return {"vectors": vectors, "layers": layers, "matched": matched, "total": total}


def run_qemu(path: Any, machine: str, elf: str = "firmware_qemu.elf", timeout: float = 600.0) -> Dict[str, Any]:
    """Run a firmware ELF in ``qemu-system-arm -M machine -icount shift=0`` with
    semihosting; returns :func:`parse_harness` plus ``instructions`` per vector
    and the exit status."""
    check_toolchain(("qemu-system-arm",))
    elf_path = Path(path).resolve() / elf
    cmd = ["qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none", "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf_path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"QEMU ({machine}) did not finish {elf_path} within {timeout:.0f} s (a hang or a fault loop)") from e
    text = res.stdout + res.stderr  # QEMU writes the semihosting console to stderr when stdout is no terminal
    out = parse_harness(text)
    out["returncode"] = res.returncode
    out["instructions"] = [v["ticks"] * QEMU_INSNS_PER_TICK for v in out["vectors"]]
    out["layer_instructions"] = {k: v * QEMU_INSNS_PER_TICK for k, v in out["layers"].items()}
    out["stdout"] = text
    return out


def profile_layers(project: Any, plan: Any, machine: Optional[str] = None) -> Dict[str, Any]:
    """Build ``firmware_profile.elf`` (per-layer SysTick marks) and run it in QEMU.

    Returns the whole-inference instructions (mean over the vectors, from the
    profiled run, whose marks add a few instructions per layer) and one row per
    layer: op, MACs and elements (patch recomputation included, per inference),
    kernel calls and instructions per inference.
    """
    from .memory_planner import work_per_layer

    path = Path(project.path)
    build_firmware(path, "firmware_profile.elf")
    run = run_qemu(path, machine or project.qemu_machine, elf="firmware_profile.elf")
    if run["matched"] != run["total"]:
        raise RuntimeError(f"profiled firmware in {path} is not bit-exact: matched {run['matched']}/{run['total']}")
    nvec = len(run["vectors"])
    g = plan.graph
    work = work_per_layer(plan)
    rows = []
    for i, n in enumerate(plan.steps):
        macs, elems = work[n]
        calls = plan.patch.n**2 if plan.patch is not None and n in plan.patch.layers else 1
        rows.append({"layer": n, "op": g.nodes[n]["op"], "macs": macs, "elements": elems, "calls": calls,
                     "instructions": run["layer_instructions"].get(i, 0) / nvec, "node": dict(_layer_shape(g, n))})
    return {"instructions": float(sum(run["instructions"]) / nvec), "layers": rows, "stack": max(v["stack"] for v in run["vectors"])}


def _layer_shape(g: Any, n: str) -> Dict[str, Any]:
    from .ir import inputs_of

    d = g.nodes[n]
    src = inputs_of(g, n)
    out = {"shape": list(d["shape"]), "in_shape": list(g.nodes[src[0]]["shape"]) if src else []}
    for k in ("kernel", "stride", "padding"):
        if k in d:
            out[k] = int(d[k])
    return out


#: symbols of the harness, startup and vector table (not the model's Flash)
HARNESS_SYMBOLS = {
    "test_inputs", "test_expected", "main", "Reset_Handler", "Default_Handler", "SysTick_Handler",
    "memcpy", "memset", "te_profile_mark", "te_layer_ticks", "te_last", "te_wraps",
}


def model_flash_bytes(elf: Any) -> Dict[str, int]:
    """Flash of the model in a linked firmware: ``.text + .rodata`` (+ ``.data``
    initialisers; the vector table is apart) less the harness and startup symbols
    (:data:`HARNESS_SYMBOLS`, sizes from ``arm-none-eabi-nm -S``)."""
    check_toolchain(("arm-none-eabi-gcc",))
    sizes = section_sizes(elf)
    total = sizes.get(".text", 0) + sizes.get(".rodata", 0) + sizes.get(".data", 0) + sizes.get(".ARM.exidx", 0)
    nm = shutil.which("arm-none-eabi-nm") or "arm-none-eabi-nm"
    res = subprocess.run([nm, "-S", str(elf)], capture_output=True, text=True, check=True)
    harness = 0
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].split(".")[0] in HARNESS_SYMBOLS and parts[2] in "tTrRdD":
            harness += int(parts[1], 16)
    return {"text_rodata": total, "harness": harness, "model": total - harness}

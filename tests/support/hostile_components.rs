//! Hostile VM plugins that no Rust guest can be: components with several
//! linear memories, a table that grows, or more instances, tables and
//! memories than a plugin may have. They complete the `hostile` plugin
//! (which is built from Rust like every other plugin): a Rust guest has one
//! memory, cannot grow a table, and a Rust component has a fixed handful of
//! instances.
//!
//! [`Attack`] names the attacks; [`write`] puts a component that makes one
//! where a test's configuration can point `plugins.vm.path`.
//!
//! Each is a real component of the `vm-plugin` world of `wit/`, made from a
//! core module written here and encoded by wit-component, as a toolchain
//! would. Every export but `inspect` traps; `inspect` carries out the
//! attack and then answers `Ok(None)`, so a host that lets the attack
//! through sees a successful call.

use std::path::{Path, PathBuf};

use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection,
    GlobalSection, GlobalType, HeapType, InstanceSection, Instruction, MemorySection, MemoryType,
    Module, ModuleArg, ModuleSection, RefType, TableSection, TableType, TypeSection, ValType,
};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::abi::{AbiVariant, WasmType};
use wit_parser::{LiftLowerAbi, ManglingAndAbi, Resolve, WasmExport, WasmExportKind, WorldItem};

/// 64 KiB, a WebAssembly page.
const PAGE: u64 = 65536;

/// Where `inspect` finds its (zeroed) answer: `Ok(None)`.
const RETURN_AREA: i32 = 64;

/// Where `cabi_realloc` starts handing out memory.
const HEAP_START: i32 = 1024;

/// What a hostile component does.
#[derive(Debug, Clone, Copy)]
pub enum Attack {
    /// `inspect` grows each of two linear memories by `mib` MiB: each
    /// memory stays under a limit of less than twice that, their total
    /// does not.
    TwoMemories {
        /// The growth of each memory.
        mib: u32,
    },
    /// `inspect` grows each of two tables by `elements` elements.
    GrowTables {
        /// The growth.
        elements: u32,
    },
    /// The component instantiates an extra module `instances` times, each
    /// instance defining `memories` memories and `tables` tables: it needs
    /// more of them than a call may have before any code runs.
    ExtraInstances {
        /// Extra instances.
        instances: u32,
        /// Memories per extra instance.
        memories: u32,
        /// Tables per extra instance.
        tables: u32,
    },
}

/// Writes the component for `attack` into `dir` and returns its path.
pub fn write(dir: &Path, attack: Attack) -> PathBuf {
    let path = dir.join("hostile_component.wasm");
    std::fs::write(&path, component(attack)).expect("write the hostile component");
    path
}

/// The component for `attack`.
pub fn component(attack: Attack) -> Vec<u8> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(crate::workspace_dir().join("wit"))
        .expect("the contract in wit/ parses");
    let world = resolve
        .select_world(&[package], Some("vm-plugin"))
        .expect("the vm-plugin world");
    let mut module = core_module(&resolve, world, attack).finish();
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
        .expect("embed the world");
    let mut component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .expect("a module of the world")
        .encode()
        .expect("encode the component");
    if let Attack::ExtraInstances {
        instances,
        memories,
        tables,
    } = attack
    {
        append_instances(&mut component, instances, memories, tables);
    }
    component
}

/// The core module: the exports of `vm-driver` with the canonical ABI's
/// signatures, a bump allocator, and the attack in `inspect`.
fn core_module(resolve: &Resolve, world: wit_parser::WorldId, attack: Attack) -> Module {
    let mangling = ManglingAndAbi::Legacy(LiftLowerAbi::Sync);
    let mut types = TypeSection::new();
    let mut functions = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    let mut count = 0u32;

    // cabi_realloc(old_ptr, old_size, align, new_size) -> ptr: a bump
    // allocator over memory 0 that never frees.
    types.ty().function([ValType::I32; 4], [ValType::I32]);
    functions.function(count);
    exports.export(
        &resolve.wasm_export_name(mangling, WasmExport::Realloc),
        ExportKind::Func,
        count,
    );
    let mut realloc = Function::new([(1, ValType::I32)]);
    for instruction in [
        Instruction::GlobalGet(0),
        Instruction::LocalGet(2),
        Instruction::I32Add,
        Instruction::I32Const(1),
        Instruction::I32Sub,
        Instruction::I32Const(0),
        Instruction::LocalGet(2),
        Instruction::I32Sub,
        Instruction::I32And,
        Instruction::LocalTee(4),
        Instruction::LocalGet(3),
        Instruction::I32Add,
        Instruction::GlobalSet(0),
        Instruction::LocalGet(4),
        Instruction::End,
    ] {
        realloc.instruction(&instruction);
    }
    code.function(&realloc);
    count += 1;

    for (key, item) in &resolve.worlds[world].exports {
        let WorldItem::Interface { id, .. } = item else {
            continue;
        };
        for func in resolve.interfaces[*id].functions.values() {
            let signature = resolve.wasm_signature(AbiVariant::GuestExport, func);
            types.ty().function(
                signature.params.iter().map(core_type),
                signature.results.iter().map(core_type),
            );
            functions.function(count);
            let name = resolve.wasm_export_name(
                mangling,
                WasmExport::Func {
                    interface: Some(key),
                    func,
                    kind: WasmExportKind::Normal,
                },
            );
            exports.export(&name, ExportKind::Func, count);
            let mut body = Function::new([]);
            if func.name == "inspect" {
                assert_eq!(
                    signature.results,
                    [WasmType::Pointer],
                    "inspect returns a pointer"
                );
                for instruction in attack_code(attack) {
                    body.instruction(&instruction);
                }
                body.instruction(&Instruction::I32Const(RETURN_AREA));
            } else {
                body.instruction(&Instruction::Unreachable);
            }
            body.instruction(&Instruction::End);
            code.function(&body);
            count += 1;
        }
    }

    let mut memories = MemorySection::new();
    memories.memory(memory(1));
    if matches!(attack, Attack::TwoMemories { .. }) {
        memories.memory(memory(0));
    }
    exports.export(
        &resolve.wasm_export_name(mangling, WasmExport::Memory),
        ExportKind::Memory,
        0,
    );
    let mut tables = TableSection::new();
    tables.table(table(1));
    if matches!(attack, Attack::GrowTables { .. }) {
        tables.table(table(0));
    }
    let mut globals = GlobalSection::new();
    globals.global(
        GlobalType {
            val_type: ValType::I32,
            mutable: true,
            shared: false,
        },
        &ConstExpr::i32_const(HEAP_START),
    );

    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&tables)
        .section(&memories)
        .section(&globals)
        .section(&exports)
        .section(&code);
    module
}

/// What `inspect` does before answering: each growth that fails traps.
fn attack_code(attack: Attack) -> Vec<Instruction<'static>> {
    let trap_if_refused = [
        Instruction::I32Const(-1),
        Instruction::I32Eq,
        Instruction::If(BlockType::Empty),
        Instruction::Unreachable,
        Instruction::End,
    ];
    let mut code = Vec::new();
    match attack {
        Attack::TwoMemories { mib } => {
            let pages = i32::try_from(u64::from(mib) * 1024 * 1024 / PAGE).expect("pages");
            for memory in [0, 1] {
                code.push(Instruction::I32Const(pages));
                code.push(Instruction::MemoryGrow(memory));
                code.extend(trap_if_refused.iter().cloned());
            }
        }
        Attack::GrowTables { elements } => {
            for table in [0, 1] {
                code.push(Instruction::RefNull(HeapType::FUNC));
                code.push(Instruction::I32Const(
                    i32::try_from(elements).expect("elements"),
                ));
                code.push(Instruction::TableGrow(table));
                code.extend(trap_if_refused.iter().cloned());
            }
        }
        Attack::ExtraInstances { .. } => {}
    }
    code
}

/// Appends a module defining `memories` memories and `tables` tables to
/// `component`, and `instances` instances of it.
fn append_instances(component: &mut Vec<u8>, instances: u32, memories: u32, tables: u32) {
    let modules = wasmparser::Parser::new(0)
        .parse_all(component)
        .filter(|payload| matches!(payload, Ok(wasmparser::Payload::ModuleSection { .. })))
        .count();
    let mut extra = Module::new();
    if tables > 0 {
        let mut section = TableSection::new();
        for _ in 0..tables {
            section.table(table(0));
        }
        extra.section(&section);
    }
    if memories > 0 {
        let mut section = MemorySection::new();
        for _ in 0..memories {
            section.memory(memory(0));
        }
        extra.section(&section);
    }
    let mut instantiations = InstanceSection::new();
    for _ in 0..instances {
        instantiations.instantiate(
            u32::try_from(modules).expect("module index"),
            std::iter::empty::<(&str, ModuleArg)>(),
        );
    }
    let mut sections = wasm_encoder::Component::new();
    sections.section(&ModuleSection(&extra));
    sections.section(&instantiations);
    // Sections may follow one another in any order: these come after the
    // encoded component's own, without its 8-byte preamble.
    component.extend_from_slice(&sections.finish()[8..]);
}

fn memory(pages: u64) -> MemoryType {
    MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    }
}

fn table(elements: u64) -> TableType {
    TableType {
        element_type: RefType::FUNCREF,
        table64: false,
        minimum: elements,
        maximum: None,
        shared: false,
    }
}

fn core_type(ty: &WasmType) -> ValType {
    match ty {
        WasmType::I32 | WasmType::Pointer | WasmType::Length => ValType::I32,
        WasmType::I64 | WasmType::PointerOrI64 => ValType::I64,
        WasmType::F32 => ValType::F32,
        WasmType::F64 => ValType::F64,
    }
}

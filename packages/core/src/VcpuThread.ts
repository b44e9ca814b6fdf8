/**
 * Which threads of a hypervisor process run vCPUs, from their names
 * (`/proc/<pid>/task/<tid>/comm`): a vCPU thread's schedstat is the vCPU's CPU time and its wait
 * for a physical CPU (steal), so we need the thread and its vCPU index.
 *
 * - QEMU: `CPU <n>/KVM` or `CPU <n>/TCG`, only with `-name <name>,debug-threads=on`; otherwise its
 *   threads keep the process's name and the vCPUs cannot be told apart (`vcpu_threads_unnamed`).
 *   Single-threaded TCG runs every vCPU on one `ALL CPUs/TCG` thread, which has no index.
 * - Cloud Hypervisor: `vcpu<n>`. Firecracker: `fc_vcpu <n>`.
 *
 * A comm is at most 15 bytes (TASK_COMM_LEN − 1). Names are never cut there: glibc's and musl's
 * pthread_setname_np refuse a longer name (the thread keeps its old one) and QEMU's vCPU count is
 * far below the 10^7 at which `CPU <n>/KVM` would reach 16 bytes. So a name is whole or absent, and
 * a longer string is no comm. Indexes are decimal without leading zeros, as the hypervisors print them.
 *
 * @since 0.1.0
 */
import { Either } from "effect"

/**
 * The hypervisors whose thread names we know; the same names as node's HypervisorCmdline.Hypervisor
 * (core cannot import node). @category models
 */
export type Hypervisor = "qemu" | "cloud-hypervisor" | "firecracker"

/** A thread of the process: its tid and its comm (with or without the file's trailing newline). @category models */
export interface ThreadComm {
  readonly tid: number
  readonly comm: string
}

/** A vCPU thread and the index of the vCPU it runs. @category models */
export interface VcpuThread {
  readonly tid: number
  readonly vcpu: number
}

/**
 * Why a process has no vCPU threads to read: its threads carry the process's name (QEMU without
 * `debug-threads=on`), or no thread is named as a vCPU and none looks unnamed (the VM has not
 * started its vCPUs yet, or this is no hypervisor). @category models
 */
export type NoVcpuThreads = "vcpu_threads_unnamed" | "no_vcpu_threads"

const TASK_COMM_MAX = 15

const patterns: Record<Hypervisor, RegExp> = {
  qemu: /^CPU (0|[1-9][0-9]*)\/(?:KVM|TCG)$/,
  "cloud-hypervisor": /^vcpu(0|[1-9][0-9]*)$/,
  firecracker: /^fc_vcpu (0|[1-9][0-9]*)$/
}
const all = Object.values(patterns)

/** The comm without the one newline the comm file ends with. */
const bare = (comm: string): string => (comm.endsWith("\n") ? comm.slice(0, -1) : comm)

/**
 * The vCPU index a thread's comm names, or undefined when it names none. With `hypervisor`, only
 * that hypervisor's form counts. At most 15 characters, so the index is a safe integer. @category parsers
 */
export const vcpuIndex = (comm: string, hypervisor?: Hypervisor): number | undefined => {
  const name = bare(comm)
  if (name.length > TASK_COMM_MAX) return undefined
  for (const pattern of hypervisor === undefined ? all : [patterns[hypervisor]]) {
    const match = pattern.exec(name)
    if (match !== null) return Number(match[1])
  }
  return undefined
}

/**
 * Whether the threads look unnamed: besides the main thread, whose comm is the process's, at least
 * one more thread carries the process's comm. Not "all threads": kernel-made threads of the process
 * (`vhost-<pid>`, `iou-wrk-<tid>`) and library threads have names of their own anyway. @category utils
 */
export const threadsUnnamed = (processComm: string, threadComms: Iterable<string>): boolean => {
  const name = bare(processComm)
  let same = 0
  for (const comm of threadComms) if (bare(comm) === name && ++same >= 2) return true
  return false
}

/**
 * The vCPU threads of a process, ordered by vCPU index then tid (two threads with one index are
 * both kept: the caller decides), or why there are none. @category utils
 */
export const findVcpuThreads = (
  processComm: string,
  threads: Iterable<ThreadComm>,
  hypervisor?: Hypervisor
): Either.Either<ReadonlyArray<VcpuThread>, NoVcpuThreads> => {
  const found: Array<VcpuThread> = []
  const comms: Array<string> = []
  for (const thread of threads) {
    const vcpu = vcpuIndex(thread.comm, hypervisor)
    if (vcpu !== undefined) found.push({ tid: thread.tid, vcpu })
    comms.push(thread.comm)
  }
  if (found.length > 0) return Either.right(found.sort((a, b) => a.vcpu - b.vcpu || a.tid - b.tid))
  return Either.left(threadsUnnamed(processComm, comms) ? "vcpu_threads_unnamed" : "no_vcpu_threads")
}

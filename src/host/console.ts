/** The BroadcastChannel on which CPUs send what user programs write to fd 1 and 2 (P's console). */
export const consoleChannel = (bootEpochMs: number): string => `splitkern-console-${bootEpochMs}`;

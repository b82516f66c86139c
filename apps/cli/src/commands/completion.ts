import { UUID } from "../api.ts";
import type { Context } from "../context.ts";
import { EXIT, usageError } from "../errors.ts";

/** Commands and their subcommands, for the completion scripts. */
const TREE: Record<string, string[]> = {
  login: [],
  logout: [],
  whoami: [],
  profiles: ["list", "use"],
  workspaces: ["list", "create", "get", "restart", "rm"],
  ws: ["list", "create", "get", "restart", "rm"],
  ssh: [],
  exec: [],
  cp: [],
  sessions: [],
  completion: ["bash", "zsh"],
  admin: [],
  help: [],
};
/** Where a workspace name is the next word. */
const TAKES_WORKSPACE = ["ssh", "exec", "sessions", "get", "restart", "rm", "cp"];
const GLOBAL = ["--profile", "--api", "--json", "--help", "--version"];

function bash(): string {
  const subs = Object.entries(TREE)
    .filter(([, v]) => v.length)
    .map(([k, v]) => `    ${k}) subs="${v.join(" ")}" ;;`)
    .join("\n");
  return `# molecule bash completion: eval "$(molecule completion bash)"
_molecule() {
  local cur prev cmd subs i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  cmd=""
  for ((i=1; i<COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) ;; *) cmd="\${COMP_WORDS[i]}"; break ;; esac
  done
  case "$prev" in --profile|--api|--runtime|--tier|--timeout) COMPREPLY=(); return ;; esac
  if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "${GLOBAL.join(" ")}" -- "$cur")); return; fi
  if [[ -z "$cmd" ]]; then COMPREPLY=($(compgen -W "${Object.keys(TREE).join(" ")}" -- "$cur")); return; fi
  subs=""
  case "$cmd" in
${subs}
  esac
  if [[ -n "$subs" && "$prev" == "$cmd" ]]; then COMPREPLY=($(compgen -W "$subs" -- "$cur")); return; fi
  case "$prev" in ${TAKES_WORKSPACE.join("|")})
    COMPREPLY=($(compgen -W "$(molecule __complete workspaces 2>/dev/null)" -- "$cur")); return ;;
  esac
  COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o default -F _molecule molecule
`;
}

function zsh(): string {
  const subs = Object.entries(TREE)
    .filter(([, v]) => v.length)
    .map(([k, v]) => `    ${k}) subs=(${v.join(" ")}) ;;`)
    .join("\n");
  return `#compdef molecule
# molecule zsh completion: eval "$(molecule completion zsh)" (or save as _molecule in $fpath)
_molecule() {
  local -a cmds subs words_nf
  cmds=(${Object.keys(TREE).join(" ")})
  words_nf=(\${words[2,CURRENT-1]:#-*})
  if [[ "\${words[CURRENT]}" == -* ]]; then compadd -- ${GLOBAL.join(" ")}; return; fi
  if (( \${#words_nf} == 0 )); then compadd -a cmds; return; fi
  local cmd=\${words_nf[1]} prev=\${words[CURRENT-1]}
  subs=()
  case $cmd in
${subs}
  esac
  if (( \${#subs} )) && [[ $prev == $cmd ]]; then compadd -a subs; return; fi
  case $prev in ${TAKES_WORKSPACE.join("|")})
    compadd -- \${(f)"$(molecule __complete workspaces 2>/dev/null)"}; return ;;
  esac
  _files
}
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then _molecule "$@"; else compdef _molecule molecule; fi
`;
}

export function completion(shell: string): number {
  if (shell === "bash") process.stdout.write(bash());
  else if (shell === "zsh") process.stdout.write(zsh());
  else throw usageError(`completion: bash or zsh, not ${JSON.stringify(shell)}`);
  return EXIT.ok;
}

/** `molecule __complete workspaces`: names (and ids) for the completion scripts; quiet on any failure. */
export async function completeWorkspaces(ctx: Context): Promise<number> {
  try {
    const all = await ctx.client().allWorkspaces();
    const names = new Set(all.filter((w) => w.status !== "removed" && w.status !== "removing").map((w) => (/\s/.test(w.name) || UUID.test(w.name) ? w.id : w.name)));
    process.stdout.write([...names].join("\n") + (names.size ? "\n" : ""));
  } catch {
    // completion must never print errors into the user's command line
  }
  return EXIT.ok;
}

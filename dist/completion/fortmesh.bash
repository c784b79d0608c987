# bash completion for fortmesh(8)
_fortmesh() {
  local cur prev cmd i
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  local commands="keygen pubkey org enroll join revoke members status peers guard run version"
  local global="--state-dir --config --help --version"
  cmd=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --state-dir|--config) ((i++)) ;;
      -*) ;;
      *) cmd=${COMP_WORDS[i]}; break ;;
    esac
  done
  case $prev in
    --state-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --config|--out|--gossip-peers|--wireguard-go) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --role) COMPREPLY=($(compgen -W "member admin lighthouse" -- "$cur")); return ;;
    --wg-backend) COMPREPLY=($(compgen -W "auto kernel userspace none" -- "$cur")); return ;;
    --log-level) COMPREPLY=($(compgen -W "trace debug info warn error" -- "$cur")); return ;;
    --interface) COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur")); return ;;
  esac
  local opts
  case $cmd in
    "") COMPREPLY=($(compgen -W "$commands $global" -- "$cur")); return ;;
    status|peers|members) opts="--json" ;;
    org) opts="init --name --prefix" ;;
    enroll) opts="--name --role --endpoint --expires --out" ;;
    join) COMPREPLY=($(compgen -f -X '!*.join' -- "$cur") $(compgen -d -- "$cur")) ;;
    revoke) opts="--reason" ;;
    guard) opts="--listen --to --connect --server-key --metrics-listen" ;;
    run) opts="--interface --wg-backend --wireguard-go --listen-port --advertise --handover-listen --gossip-listen --gossip-peers --metrics-listen --lighthouse --relay-udp --relay-tcp --log-level" ;;
  esac
  COMPREPLY+=($(compgen -W "$opts --state-dir --config --help" -- "$cur"))
}
complete -F _fortmesh fortmesh

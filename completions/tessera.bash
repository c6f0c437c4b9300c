# bash completion for tessera. Install: source this file, or copy it to
# /usr/share/bash-completion/completions/tessera.
_tessera_qubes() {
  tessera ls --json 2>/dev/null | sed -n 's/^ *"name": "\(.*\)",\{0,1\}$/\1/p'
}

_tessera() {
  local cur prev verb i
  COMPREPLY=()
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  local verbs="apply cell config daemon events kill logs ls policy prefs restart run start stop template version volume"
  verb=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --config) ((i++)) ;;
      -*) ;;
      *) verb=${COMP_WORDS[i]}; break ;;
    esac
  done
  if [[ $prev == --config ]]; then
    COMPREPLY=($(compgen -f -- "$cur")); return
  fi
  if [[ -z $verb ]]; then
    COMPREPLY=($(compgen -W "$verbs --config --help" -- "$cur")); return
  fi
  case $verb in
    ls) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
    start) COMPREPLY=($(compgen -W "--dispvm $(_tessera_qubes)" -- "$cur")) ;;
    stop|kill) COMPREPLY=($(compgen -W "--all $(_tessera_qubes)" -- "$cur")) ;;
    restart|logs) COMPREPLY=($(compgen -W "$(_tessera_qubes)" -- "$cur")) ;;
    prefs)
      if [[ $prev == prefs ]]; then
        COMPREPLY=($(compgen -W "$(_tessera_qubes)" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "autostart backend class cpus default_dispvm features firewall idle_timeout label memory name netvm provides_network source tags template uuid" -- "$cur"))
      fi ;;
    run)
      # Only the word right after `run` and its options (and their values)
      # is a qube; after it, the command.
      if [[ $prev == --user || $prev == -u ]]; then
        COMPREPLY=($(compgen -W "user root" -- "$cur")); return
      fi
      if [[ $prev == --cwd ]]; then
        COMPREPLY=($(compgen -d -- "$cur")); return
      fi
      [[ $prev == --env ]] && return
      local n=0
      for ((i = i + 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
          --user|-u|--env|--cwd) ((i++)) ;;
          -*) ;;
          *) n=$((n + 1)) ;;
        esac
      done
      if ((n == 0)); then
        COMPREPLY=($(compgen -W "--dispvm --dispvm= --user -u -t -T --env --cwd --detach --no-filter-escape-chars --relay --help -- $(_tessera_qubes)" -- "$cur"))
      else
        COMPREPLY=($(compgen -c -- "$cur"))
      fi ;;
    apply) COMPREPLY=($(compgen -W "--dry-run --yes" -f -- "$cur")) ;;
    daemon) COMPREPLY=($(compgen -W "--example --no-autostart --admin-group --allow-host-sources --socket-mode --stop-grace-ms" -- "$cur")) ;;
    events) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
    config|policy|cell|template) COMPREPLY=($(compgen -f -- "$cur")) ;;
    volume)
      if [[ $prev == volume ]]; then
        COMPREPLY=($(compgen -W "ls purge adopt copy" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "--json --force --to $(_tessera_qubes)" -- "$cur"))
      fi ;;
  esac
}
complete -F _tessera tessera

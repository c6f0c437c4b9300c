# bash completion for tessera. Install: source this file, or copy it to
# /usr/share/bash-completion/completions/tessera.
_tessera_qubes() {
  tessera ls --json 2>/dev/null | sed -n 's/^ *"name": "\(.*\)",\{0,1\}$/\1/p'
}

_tessera_templates() {
  tessera template list 2>/dev/null | sed -n '2,$s/ .*//p'
}

# Completes the words after a verb that has subcommands (config, policy,
# template, cell): the subcommand first, then its options and arguments.
# $1 = the verb, $2 = index of the verb in COMP_WORDS.
_tessera_group() {
  local verb=$1 i sub="" n=0
  for ((i = $2 + 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      --policy-dir|--runtime-dir|--compat-dir|--system|--from|--suite|--mirror|--busybox) ((i++)) ;;
      -*) ;;
      *) if [[ -z $sub ]]; then sub=${COMP_WORDS[i]}; else n=$((n + 1)); fi ;;
    esac
  done
  if [[ -z $sub ]]; then
    case $verb in
      config) COMPREPLY=($(compgen -W "check show --help" -- "$cur")) ;;
      policy) COMPREPLY=($(compgen -W "check eval explain --help" -- "$cur")) ;;
      template) COMPREPLY=($(compgen -W "build list ls show commit remove --help" -- "$cur")) ;;
      cell) COMPREPLY=($(compgen -W "run cleanup --help" -- "$cur")) ;;
    esac
    return
  fi
  case $prev in
    --policy-dir|--runtime-dir|--compat-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --system|--busybox) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --from) COMPREPLY=($(compgen -W "busybox debootstrap host" -d -- "$cur")); return ;;
    --suite|--mirror) return ;;
  esac
  case $verb/$sub in
    config/check) COMPREPLY=($(compgen -W "--example" -f -- "$cur")) ;;
    config/show) COMPREPLY=($(compgen -W "--example --json" -f -- "$cur")) ;;
    policy/check) COMPREPLY=($(compgen -W "--policy-dir --runtime-dir --compat-dir" -- "$cur")) ;;
    policy/eval|policy/explain)
      # SERVICE SOURCE TARGET: the last two are qubes.
      if ((n >= 1)) && [[ $cur != -* ]]; then
        COMPREPLY=($(compgen -W "$(_tessera_qubes) @default @dispvm @adminvm" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "--policy-dir --runtime-dir --compat-dir --system" -- "$cur"))
      fi ;;
    template/build) COMPREPLY=($(compgen -W "--from --suite --mirror --busybox --replace" -- "$cur")) ;;
    template/list|template/ls) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
    template/show) COMPREPLY=($(compgen -W "--json $(_tessera_templates)" -- "$cur")) ;;
    template/remove|template/commit) COMPREPLY=($(compgen -W "$(_tessera_templates)" -- "$cur")) ;;
    cell/run)
      if ((n == 0)); then
        COMPREPLY=($(compgen -W "--dispvm -- $(_tessera_qubes)" -- "$cur"))
      else
        COMPREPLY=($(compgen -c -- "$cur"))
      fi ;;
  esac
}

_tessera() {
  local cur prev verb i
  COMPREPLY=()
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  local verbs="apply call cell clipboard config daemon events firewall kill logs ls policy prefs prompt restart run start stop template version volume"
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
    ls) COMPREPLY=($(compgen -W "--json $(_tessera_qubes)" -- "$cur")) ;;
    start) COMPREPLY=($(compgen -W "--dispvm $(_tessera_qubes)" -- "$cur")) ;;
    stop|kill) COMPREPLY=($(compgen -W "--all $(_tessera_qubes)" -- "$cur")) ;;
    restart|logs) COMPREPLY=($(compgen -W "$(_tessera_qubes)" -- "$cur")) ;;
    prefs)
      if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--json" -- "$cur"))
      elif [[ $prev == prefs ]]; then
        COMPREPLY=($(compgen -W "$(_tessera_qubes)" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "autostart backend class cpus default_dispvm features firewall idle_timeout label memory name netvm provides_network source tags template uplink uplink_address uplink_dns uplink_gateway uuid" -- "$cur"))
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
    call)
      if [[ $prev == --source ]]; then
        COMPREPLY=($(compgen -W "dom0 $(_tessera_qubes)" -- "$cur")); return
      fi
      [[ $prev == --timeout ]] && return
      COMPREPLY=($(compgen -W "--source --timeout --no-filter-escape-chars @default @dispvm @adminvm $(_tessera_qubes)" -- "$cur")) ;;
    prompt) COMPREPLY=($(compgen -W "--list --json --answer allow deny" -- "$cur")) ;;
    clipboard)
      if [[ $prev == --from || $prev == --to ]]; then
        COMPREPLY=($(compgen -W "$(_tessera_qubes)" -- "$cur"))
      elif [[ $prev == clipboard ]]; then
        COMPREPLY=($(compgen -W "copy paste show clear --json" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "--from --to --json" -- "$cur"))
      fi ;;
    firewall)
      if [[ $prev == firewall ]]; then
        COMPREPLY=($(compgen -W "$(_tessera_qubes)" -- "$cur"))
      elif [[ ${COMP_WORDS[COMP_CWORD-2]} == firewall ]]; then
        COMPREPLY=($(compgen -W "list add del reload --json" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "accept drop dsthost= proto=tcp proto=udp proto=icmp dstports= icmptype= specialtarget=dns expire= comment= --json" -- "$cur"))
      fi ;;
    apply)
      if [[ $prev == --restart-on-change ]]; then
        COMPREPLY=($(compgen -W "never if-idle always" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "--dry-run --yes --restart-on-change" -f -- "$cur"))
      fi ;;
    daemon) COMPREPLY=($(compgen -W "--example --no-autostart --admin-group --allow-host-sources --socket-mode --stop-grace-ms --cgroups" -- "$cur")) ;;
    events) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
    config|policy|cell|template) _tessera_group "$verb" "$i" ;;
    volume)
      if [[ $prev == volume ]]; then
        COMPREPLY=($(compgen -W "ls purge adopt copy resize" -- "$cur"))
      else
        COMPREPLY=($(compgen -W "--json --force --to $(_tessera_qubes)" -- "$cur"))
      fi ;;
  esac
}
complete -F _tessera tessera

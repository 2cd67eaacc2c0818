#!/usr/bin/env bash
# Lists the external programs the code executes and fails when one is not installed by
# scripts/common.sh, so that a fresh machine set up by lab-up.sh, test.sh or bench.sh has them all.
#
#   scripts/check-programs.sh              # the code against the lists in scripts/common.sh
#   scripts/check-programs.sh --installed  # also: every mapped program of VINFRA_PACKAGES is on PATH
#   scripts/check-programs.sh --installed --bench   # ... and of VINFRA_BENCH_PACKAGES
#
# Reads the .rs files under crates/ and fuzz/ (comment lines left out) and takes as executed:
#   - the program of `Command::new(P)`, `spawn_detached(P, …)` and a test's `Needs::program(P)`
#     (crates/vinfra-testenv), where P is a string literal,
#     `Path::new("…")`, a `const NAME: &str = "…"` (defined in any file) or
#     `env!("CARGO_BIN_EXE_…")` (one of our binaries);
#   - the first element of the argument vector given to a helper that runs one (`sh`, `try_sh`,
#     `exec`, `try_exec`, `run_daemonized`, `spawn`): a `&[…]` or `vec![…]` literal, or a local
#     variable bound to one in the same file;
#   - the element after `"netns", "exec", NAMESPACE` (`ip netns exec NAMESPACE PROGRAM …`).
# A program given by any other expression (a variable, a field) fails the check unless the
# expression is one of DYNAMIC below, which says where the program really comes from.
# A program executed under src/ or tests/ must come from VINFRA_PACKAGES (scripts/test.sh installs
# it); one executed only under benches/ may come from VINFRA_BENCH_PACKAGES (scripts/bench.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/common.sh

installed=0
bench=0
for arg in "$@"; do
    case $arg in
    --installed) installed=1 ;;
    --bench) bench=1 ;;
    *)
        echo "usage: $0 [--installed [--bench]]" >&2
        exit 2
        ;;
    esac
done

# Expressions (as written, without a leading `&`) that give a program at run time: EXPR=PROGRAM,
# the program they run (checked like the others), or EXPR=- when the calls that feed them are
# checked instead.
DYNAMIC=(
    'args[0]=-'                   # sh/try_sh/exec helpers: their call sites are checked
    'program=-'                   # spawn_detached's and Needs::program's parameter: their call sites are checked
    'argv[0]=qemu-system-x86_64'  # run_daemonized: a QEMU command line
    'binary=qemu-system-x86_64'   # the agent's QEMU (`vinfra agent --qemu`, this by default)
    'self.binary=qemu-system-x86_64'
    'qemu=qemu-system-x86_64'
    's.vinfra_binary=vinfra'      # the lab runs its own binary
    's.vinfra_binary.display().to_string()=vinfra'
    'self.state.vinfra_binary.display().to_string()=vinfra'
    'common::VINFRA=vinfra'        # a benchmark's own build of the binary (env!("CARGO_BIN_EXE_vinfra"))
    'this_benchmark=cargo'         # a benchmark started again as its own helper (current_exe): cargo built it
)

die() {
    echo "check-programs: $*" >&2
    exit 1
}

# Not crates/vinfra-testenv: it only passes programs through, and its own tests name missing ones.
mapfile -t files < <(find crates fuzz -name '*.rs' -not -path '*/target/*' \
    -not -path 'crates/vinfra-testenv/*' | sort)
[[ ${#files[@]} -gt 0 ]] || die "no Rust files found"

# One line per place a program is executed: "prog<TAB>FILE:LINE<TAB>NAME" or
# "dyn<TAB>FILE:LINE<TAB>EXPRESSION".
found=$(perl -e '
use strict;
use warnings;
my (%src, %const);
for my $f (@ARGV) {
    open(my $fh, "<", $f) or die "$f: $!\n";
    local $/;
    my $s = <$fh>;
    close($fh);
    $s =~ s{^[ \t]*//[^\n]*}{}mg;
    $src{$f} = $s;
    while ($s =~ /\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:\x27static\s+)?str\s*=\s*(?:"([^"]*)"|env!\(\s*"CARGO_BIN_EXE_([^"]+)"\s*\))\s*;/g) {
        push @{ $const{$1} }, defined $2 ? $2 : $3;
    }
}

# The element starting at $p: (text, the character that ends it, position after that character).
sub element {
    my ($s, $p) = @_;
    my ($depth, $start) = (0, $p);
    while ($p < length $s) {
        my $c = substr($s, $p, 1);
        if ($c eq "\"") {
            $p++;
            while ($p < length $s && substr($s, $p, 1) ne "\"") {
                $p++ if substr($s, $p, 1) eq "\\";
                $p++;
            }
        } elsif ($c =~ /[(\[{]/) {
            $depth++;
        } elsif ($c =~ /[)\]}]/) {
            return (substr($s, $start, $p - $start), $c, $p + 1) if $depth == 0;
            $depth--;
        } elsif ($c eq "," && $depth == 0) {
            return (substr($s, $start, $p - $start), $c, $p + 1);
        }
        $p++;
    }
    return (substr($s, $start), "", $p);
}

sub trim {
    my ($e) = @_;
    $e =~ s/^\s+|\s+$//g;
    $e =~ s/^&\s*//;
    return $e;
}

# The programs an expression names, or none when it is not a constant one.
sub resolve {
    my $e = trim($_[0]);
    $e =~ s/\.(?:into|to_string|to_owned)\(\)$//;
    return ($1) if $e =~ /^"([^"\\]*)"$/;
    return ($1) if $e =~ /^(?:std::path::)?Path::new\(\s*"([^"]*)"\s*\)$/;
    return ($1) if $e =~ /^env!\(\s*"CARGO_BIN_EXE_([^"]+)"\s*\)$/;
    return @{ $const{$e} } if $e =~ /^[A-Z][A-Z0-9_]*$/ && $const{$e};
    return ();
}

sub report {
    my ($f, $s, $pos, $e) = @_;
    my $line = 1 + (substr($s, 0, $pos) =~ tr/\n//);
    my @p = resolve($e);
    if (@p) {
        for my $p (@p) {
            $p =~ s{.*/}{};
            print "prog\t$f:$line\t$p\n";
        }
    } else {
        my $t = trim($e);
        $t =~ s/\s+/ /g;
        print "dyn\t$f:$line\t$t\n";
    }
}

for my $f (sort keys %src) {
    my $s = $src{$f};
    while ($s =~ /(?<!fn )(?:\bCommand::new|\bspawn_detached|\.program)\(\s*/g) {
        my $at = pos($s);
        my ($e) = element($s, $at);
        report($f, $s, $at, $e);
        pos($s) = $at;
    }
    while ($s =~ /(?<!\w)(?:sh|try_sh|exec|try_exec|run_daemonized|spawn)\(\s*/g) {
        my $at = pos($s);
        my ($arg) = element($s, $at);
        my $a = trim($arg);
        my $list;
        if ($a =~ /^(?:vec!\s*)?\[/) {
            $list = $at + index(substr($s, $at), "[") + 1;
        } elsif ($a =~ /^[a-z_][a-z0-9_]*$/) {
            my $t = $s;
            $list = pos($t) if $t =~ /\blet\s+(?:mut\s+)?\Q$a\E\b[^=;]*=\s*&?\s*(?:vec!\s*)?\[/g;
        }
        pos($s) = $at;
        next unless defined $list;
        my ($first) = element($s, $list);
        report($f, $s, $list, $first) if trim($first) ne "";
    }
    while ($s =~ /"netns"(?:\.into\(\))?\s*,\s*"exec"(?:\.into\(\))?\s*,/g) {
        my $at = pos($s);
        my (undef, $end, $next) = element($s, $at);
        if ($end eq ",") {
            my ($prog, undef, undef) = element($s, $next);
            report($f, $s, $next, $prog) if trim($prog) ne "";
        }
        pos($s) = $at;
    }
}
' "${files[@]}")

is_present() {
    local p
    for p in "${VINFRA_PRESENT_PROGRAMS[@]}"; do [[ $p == "$1" ]] && return 0; done
    return 1
}

in_list() {
    local want=$1 p
    shift
    for p in "$@"; do [[ $p == "$want" ]] && return 0; done
    return 1
}

# The program DYNAMIC gives for an expression ("-" when its callers are checked); fails without one.
dynamic_program() {
    local e
    for e in "${DYNAMIC[@]}"; do
        if [[ ${e%=*} == "$1" ]]; then
            echo "${e##*=}"
            return 0
        fi
    done
    return 1
}

errors=0
fail() {
    echo "check-programs: $*" >&2
    errors=$((errors + 1))
}

# program -> "tests" when src/ or tests/ execute it, else "benches"; program -> where.
declare -A used_by where
while IFS=$'\t' read -r kind at what; do
    [[ -n $kind ]] || continue
    if [[ $kind == dyn ]]; then
        if ! given=$(dynamic_program "$what"); then
            fail "$at: cannot tell which program \`$what\` is; run it through a constant or a literal, or add the expression to DYNAMIC in scripts/check-programs.sh with the program it gives"
            continue
        fi
        [[ $given != - ]] || continue
        what=$given
    fi
    if [[ $at == */benches/* ]]; then
        [[ ${used_by[$what]:-} == tests ]] || used_by[$what]=benches
        [[ -n ${where[$what]:-} ]] || where[$what]=$at
    elif [[ ${used_by[$what]:-} != tests ]]; then
        used_by[$what]=tests
        where[$what]=$at
    fi
done <<<"$found"

for prog in $(printf '%s\n' "${!used_by[@]}" | sort); do
    pkg=${VINFRA_PROGRAM_PACKAGE[$prog]:-}
    if [[ -z $pkg ]]; then
        if is_present "$prog"; then
            printf '  %-20s %-22s %s\n' "$prog" "(always present)" "${where[$prog]}"
        else
            fail "${where[$prog]} executes \`$prog\`, which scripts/common.sh does not install: add it to VINFRA_PROGRAM_PACKAGE with its Debian package, and the package to VINFRA_PACKAGES (or, when only benchmarks run it, VINFRA_BENCH_PACKAGES)"
        fi
        continue
    fi
    printf '  %-20s %-22s %s\n' "$prog" "$pkg" "${where[$prog]}"
    if in_list "$pkg" "${VINFRA_PACKAGES[@]}"; then
        continue
    elif [[ ${used_by[$prog]} == tests ]]; then
        fail "${where[$prog]} executes \`$prog\` in a test or the lab, but its package $pkg is not in VINFRA_PACKAGES (scripts/test.sh and scripts/lab-up.sh install only those)"
    elif ! in_list "$pkg" "${VINFRA_BENCH_PACKAGES[@]}"; then
        fail "${where[$prog]} executes \`$prog\`, but its package $pkg is in neither VINFRA_PACKAGES nor VINFRA_BENCH_PACKAGES"
    fi
done

# Every mapped package is installed by some list.
for prog in "${!VINFRA_PROGRAM_PACKAGE[@]}"; do
    pkg=${VINFRA_PROGRAM_PACKAGE[$prog]}
    in_list "$pkg" "${VINFRA_PACKAGES[@]}" "${VINFRA_BENCH_PACKAGES[@]}" ||
        fail "VINFRA_PROGRAM_PACKAGE maps $prog to $pkg, which no package list installs"
done

# After installation: the map is right, every program is where the code will look for it.
if [[ $installed -eq 1 ]]; then
    lists=("${VINFRA_PACKAGES[@]}")
    [[ $bench -eq 0 ]] || lists+=("${VINFRA_BENCH_PACKAGES[@]}")
    for prog in $(printf '%s\n' "${!VINFRA_PROGRAM_PACKAGE[@]}" | sort); do
        pkg=${VINFRA_PROGRAM_PACKAGE[$prog]}
        in_list "$pkg" "${lists[@]}" || continue
        command -v "$prog" >/dev/null ||
            fail "\`$prog\` is not on PATH although package $pkg should have been installed (is the map in scripts/common.sh right?)"
    done
fi

if [[ $errors -gt 0 ]]; then
    echo "check-programs: $errors problem(s)" >&2
    exit 1
fi
echo "check-programs: every program the code executes is installed by scripts/common.sh"

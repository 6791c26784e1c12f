# Installs (once) and starts the servers the tests and benchmarks talk to. Sourced by
# scripts/test.sh; `scripts/services.sh postgres|kafka|zookeeper|all` runs it by hand,
# `scripts/services.sh kafka-broker` runs a broker for the examples and
# `scripts/services.sh zookeeper-server` a ZooKeeper server for a high-availability cluster.
# Everything it installs goes to $EDDY_TOOLS (default $HOME/.cache/eddy-tools) or comes from
# Debian's packages; every step is idempotent.

EDDY_TOOLS="${EDDY_TOOLS:-$HOME/.cache/eddy-tools}"
_services_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

_sudo() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

_apt_install() {
    echo "installing $* from Debian's packages"
    _sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive _sudo apt-get install -y -q "$@"
}

_listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# The newest installed Postgres server's bin directory, or nothing.
_postgres_bin() {
    local bin
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$bin" ] && [ -x "$bin/postgres" ]; then echo "$bin"; fi
}

# Postgres on 127.0.0.1:5432, user `postgres` without a password (what the tests connect to
# unless EDDY_POSTGRES_URL names another server). When nothing listens there, installs the
# server from Debian's packages if needed and starts a data directory of its own (trust
# authentication on loopback only, prepared transactions enabled).
ensure_postgres() {
    local bin
    bin="$(_postgres_bin)"
    if [ -z "$bin" ]; then
        _apt_install postgresql
        bin="$(_postgres_bin)"
    fi
    [ -n "$bin" ] || { echo "no Postgres server binaries after installing postgresql" >&2; return 1; }
    export EDDY_POSTGRES_BIN="${EDDY_POSTGRES_BIN:-$bin}"
    if [ -n "${EDDY_POSTGRES_URL:-}" ]; then return 0; fi
    if ! _listening 127.0.0.1 5432; then
        local data run=()
        if [ "$(id -u)" = 0 ]; then
            # The server refuses to run as root: run it as the package's `postgres` user, in
            # a directory that user owns.
            data=/var/lib/postgresql/eddy-test
            run=(runuser -u postgres --)
            mkdir -p "$data" && chown postgres: "$data"
        else
            data="$EDDY_TOOLS/postgres"
            mkdir -p "$data"
        fi
        if [ ! -f "$data/PG_VERSION" ]; then
            echo "creating a Postgres data directory in $data"
            "${run[@]}" "$bin/initdb" -A trust -U postgres -D "$data" >/dev/null
        fi
        echo "starting Postgres on 127.0.0.1:5432 ($data)"
        "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
            -o "-p 5432 -k /tmp -c listen_addresses=127.0.0.1 -c max_prepared_transactions=64 -c fsync=off" \
            start >/dev/null
    fi
    if ! "$bin/psql" -X -q -d "postgres://postgres@127.0.0.1:5432/postgres" -c 'SELECT 1' >/dev/null; then
        echo "a server listens on 127.0.0.1:5432 but user postgres cannot connect without a password; set EDDY_POSTGRES_URL to a URL that can" >&2
        return 1
    fi
}

# The jars scripts/NAME/pom.xml names (the version in its <NAME.version>), copied from Maven
# Central into $EDDY_TOOLS/NAME-VERSION/libs once; prints that directory.
_maven_libs() {
    local name="$1" version home
    version="$(sed -n "s:.*<$name.version>\(.*\)</$name.version>.*:\1:p" "$_services_dir/$name/pom.xml")"
    home="$EDDY_TOOLS/$name-$version"
    if [ ! -f "$home/.complete" ]; then
        command -v java >/dev/null || _apt_install openjdk-17-jre-headless >&2
        command -v mvn >/dev/null || _apt_install maven >&2
        echo "fetching $name $version from Maven Central into $home" >&2
        rm -rf "$home"
        mvn -q -B -f "$_services_dir/$name/pom.xml" dependency:copy-dependencies \
            -DoutputDirectory="$home/libs" >&2 || return 1
        touch "$home/.complete"
    fi
    echo "$home/libs"
}

# Apache Kafka's broker jars (scripts/kafka/pom.xml); exports EDDY_KAFKA_LIBS. The tests start
# brokers from it.
ensure_kafka() {
    EDDY_KAFKA_LIBS="$(_maven_libs kafka)" || return 1
    export EDDY_KAFKA_LIBS
}

# Apache ZooKeeper's server jars (scripts/zookeeper/pom.xml); exports EDDY_ZOOKEEPER_LIBS. The
# high-availability tests start their own servers from it (eddy_cluster::ha::testing).
ensure_zookeeper() {
    EDDY_ZOOKEEPER_LIBS="$(_maven_libs zookeeper)" || return 1
    export EDDY_ZOOKEEPER_LIBS
}

# A single ZooKeeper server on 127.0.0.1:PORT (default 2181) with its data in DIR (default
# $EDDY_TOOLS/zookeeper-server), in the foreground: the quorum of a high-availability cluster
# started by hand (`high-availability.zookeeper.quorum: 127.0.0.1:2181`).
zookeeper_server() {
    local port="${1:-2181}" dir="${2:-$EDDY_TOOLS/zookeeper-server}"
    ensure_zookeeper
    mkdir -p "$dir"
    echo "ZooKeeper on 127.0.0.1:$port (data in $dir)"
    exec java -Xmx256m -Dzookeeper.admin.enableServer=false -cp "$EDDY_ZOOKEEPER_LIBS/*" \
        org.apache.zookeeper.server.ZooKeeperServerMain "$port" "$dir"
}

# Apache Flink's own CLI and REST client classes (PyPI's apache-flink, the version the Nexmark
# and latency benchmarks compare against) in a virtual environment under $EDDY_TOOLS; exports
# EDDY_FLINK_HOME. The tests drive Flink's CLI and check the REST API with Flink's classes.
FLINK_VERSION=2.3.0
ensure_flink() {
    local venv="$EDDY_TOOLS/flink-venv" home
    if [ ! -f "$venv/.complete-$FLINK_VERSION" ]; then
        command -v java >/dev/null || _apt_install openjdk-17-jdk-headless
        echo "installing apache-flink $FLINK_VERSION into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q "apache-flink==$FLINK_VERSION"
        touch "$venv/.complete-$FLINK_VERSION"
    fi
    home="$(ls -d "$venv"/lib/python3*/site-packages/pyflink)"
    export EDDY_FLINK_HOME="$home"
}

# A single Kafka broker (KRaft, broker and controller in one) on 127.0.0.1:PORT (default 9092)
# with its log in DIR (default $EDDY_TOOLS/kafka-broker), in the foreground: the broker the
# README's Kafka examples talk to. The tests start their own (eddy_kafka::testing).
kafka_broker() {
    local port="${1:-9092}" dir="${2:-$EDDY_TOOLS/kafka-broker}" controller
    controller=$((port + 1))
    ensure_kafka
    mkdir -p "$dir"
    cat >"$dir/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
    if [ ! -f "$dir/data/meta.properties" ]; then
        java -cp "$EDDY_KAFKA_LIBS/*" kafka.tools.StorageTool format \
            -t "$(java -cp "$EDDY_KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid)" \
            -c "$dir/server.properties"
    fi
    echo "Kafka on 127.0.0.1:$port (log in $dir/data)"
    exec java -Xmx1g -cp "$EDDY_KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    case "${1:-all}" in
        postgres) ensure_postgres ;;
        kafka) ensure_kafka; echo "EDDY_KAFKA_LIBS=$EDDY_KAFKA_LIBS" ;;
        zookeeper) ensure_zookeeper; echo "EDDY_ZOOKEEPER_LIBS=$EDDY_ZOOKEEPER_LIBS" ;;
        flink) ensure_flink; echo "EDDY_FLINK_HOME=$EDDY_FLINK_HOME" ;;
        kafka-broker) shift; kafka_broker "$@" ;;
        zookeeper-server) shift; zookeeper_server "$@" ;;
        all) ensure_postgres; ensure_kafka; ensure_zookeeper; ensure_flink ;;
        *) echo "usage: $0 [postgres|kafka|zookeeper|flink|all] | kafka-broker [PORT [DIR]] | zookeeper-server [PORT [DIR]]" >&2; exit 2 ;;
    esac
fi

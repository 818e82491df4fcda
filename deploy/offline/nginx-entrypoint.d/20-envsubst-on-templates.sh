#!/bin/sh
# Renders every $NGINX_ENVSUBST_TEMPLATE_DIR/**/*$NGINX_ENVSUBST_TEMPLATE_SUFFIX (defaults
# /etc/nginx/templates, .template) to the same relative path without the suffix under
# $NGINX_ENVSUBST_OUTPUT_DIR (default /etc/nginx/conf.d). Only variables that are defined (and
# match $NGINX_ENVSUBST_FILTER, if set) are substituted, so nginx's own $variables survive.
set -eu

template_dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
output_dir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
filter=${NGINX_ENVSUBST_FILTER:-}

[ -d "$template_dir" ] || exit 0
if [ ! -w "$output_dir" ]; then
    echo "$0: $output_dir is not writable, templates are not rendered" >&2
    exit 0
fi
defined_envs=$(awk -v filter="$filter" 'END {
    for (name in ENVIRON) if (name ~ filter) printf "${%s} ", name }' </dev/null)
find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
    relative=${template#"$template_dir/"}
    output="$output_dir/${relative%"$suffix"}"
    mkdir -p "$(dirname "$output")"
    echo "$0: rendering $template to $output" >&2
    envsubst "$defined_envs" <"$template" >"$output"
done

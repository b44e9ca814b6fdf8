/**
 * Who is reporting: `service.name` (default `vm-metrics`), `service.version`, `service.instance.id`
 * and `host.name` (default: this host's name), plus any `OTEL_RESOURCE_ATTRIBUTES`, so that many hosts
 * can feed one Prometheus or Collector. `OTEL_SERVICE_NAME` overrides the service name, as the OTel
 * specification says. Rendered as `target_info` in Prometheus text and as the OTel Resource.
 *
 * @since 0.1.0
 */
import * as os from "node:os"
import { Config, Effect, Option } from "effect"

/** @category models */
export type ResourceAttributes = Readonly<Record<string, string>>

/** @category models */
export interface ResourceOptions {
  readonly serviceName?: string
  readonly serviceVersion?: string
  readonly serviceInstanceId?: string
  readonly hostName?: string
  /** Extra attributes; they win over the ones above. */
  readonly attributes?: ResourceAttributes
}

/** The package version reported as service.version. @category constants */
export const VERSION = "0.1.0"

/** Parses `key=value,key2=value2` (values percent-decoded), as OTEL_RESOURCE_ATTRIBUTES is written. @category parsers */
export const parseAttributeList = (text: string): Record<string, string> => {
  const attributes: Record<string, string> = {}
  for (const pair of text.split(",")) {
    const eq = pair.indexOf("=")
    if (eq <= 0) continue
    const key = pair.slice(0, eq).trim()
    try {
      attributes[key] = decodeURIComponent(pair.slice(eq + 1).trim())
    } catch {
      attributes[key] = pair.slice(eq + 1).trim()
    }
  }
  return attributes
}

/** @category constructors */
export const make = (options: ResourceOptions = {}): ResourceAttributes => {
  // A host name given as an attribute (OTEL_RESOURCE_ATTRIBUTES=host.name=…) names the instance too.
  const host = options.hostName ?? options.attributes?.["host.name"] ?? os.hostname()
  return {
    "service.name": options.serviceName ?? "vm-metrics",
    "service.version": options.serviceVersion ?? VERSION,
    "service.instance.id": options.serviceInstanceId ?? options.attributes?.["service.instance.id"] ?? host,
    "host.name": host,
    ...options.attributes
  }
}

/** Options from the standard OTel environment variables. @category config */
export const config: Config.Config<ResourceOptions> = Config.all({
  serviceName: Config.option(Config.string("OTEL_SERVICE_NAME")),
  attributes: Config.option(Config.string("OTEL_RESOURCE_ATTRIBUTES"))
}).pipe(
  Config.map(({ serviceName, attributes }) => {
    const fromList = Option.map(attributes, parseAttributeList)
    const name = Option.orElse(serviceName, () => Option.flatMapNullable(fromList, (a) => a["service.name"]))
    return {
      ...(Option.isSome(name) ? { serviceName: name.value } : {}),
      ...(Option.isSome(fromList) ? { attributes: fromList.value } : {})
    }
  })
)

/** Resource attributes from the environment merged under explicit options. @category constructors */
export const fromConfig = (options: ResourceOptions = {}) =>
  Effect.map(config, (fromEnv) =>
    make({ ...fromEnv, ...options, attributes: { ...fromEnv.attributes, ...options.attributes } })
  )

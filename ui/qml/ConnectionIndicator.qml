// The connection to the server: a coloured dot with its state in words.
import QtQuick 2.15
import QtQuick.Controls 2.15
import "."

Item {
    id: root
    required property string connection
    property bool showText: true
    implicitWidth: row.implicitWidth
    implicitHeight: row.implicitHeight

    readonly property color colour: connection === "online" ? Theme.online
                                   : connection === "offline" ? Theme.error : Theme.warning
    readonly property string words: ({ "online": qsTr("Online"), "offline": qsTr("Offline"),
                                       "connecting": qsTr("Connecting…"),
                                       "reconnecting": qsTr("Reconnecting…") })[connection] || connection

    Row {
        id: row
        spacing: 6
        Rectangle {
            width: 10; height: 10; radius: 5
            anchors.verticalCenter: parent.verticalCenter
            color: root.colour
            SequentialAnimation on opacity {
                running: root.connection === "connecting" || root.connection === "reconnecting"
                loops: Animation.Infinite
                NumberAnimation { to: 0.3; duration: 500 }
                NumberAnimation { to: 1; duration: 500 }
            }
        }
        Text {
            visible: root.showText
            text: root.words
            color: Theme.subtle
            font.pixelSize: Theme.fontSmall
            anchors.verticalCenter: parent.verticalCenter
        }
    }
    ToolTip.visible: hover.hovered && !showText
    ToolTip.text: words
    HoverHandler { id: hover }
}
